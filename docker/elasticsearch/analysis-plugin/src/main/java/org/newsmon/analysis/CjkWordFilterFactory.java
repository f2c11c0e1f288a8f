package org.newsmon.analysis;

import org.apache.lucene.analysis.TokenStream;
import org.elasticsearch.plugin.NamedComponent;
import org.elasticsearch.plugin.analysis.AnalysisMode;
import org.elasticsearch.plugin.analysis.TokenFilterFactory;

/**
 * {@code newsmon_cjk_word}: the query side, the same bigrams plus each run as one spanning
 * token, so that an unquoted CJK word is searched as a phrase (see {@link CjkBigramFilter}).
 */
@NamedComponent("newsmon_cjk_word")
public final class CjkWordFilterFactory implements TokenFilterFactory {
    @Override
    public TokenStream create(TokenStream tokenStream) {
        return new CjkBigramFilter(tokenStream, true);
    }

    // The spanning tokens would only bloat an index: refuse it in an index analyzer.
    @Override
    public AnalysisMode getAnalysisMode() {
        return AnalysisMode.SEARCH_TIME;
    }
}
