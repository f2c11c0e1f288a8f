package org.newsmon.analysis;

import org.apache.lucene.analysis.TokenStream;
import org.elasticsearch.plugin.NamedComponent;
import org.elasticsearch.plugin.analysis.TokenFilterFactory;

/** {@code newsmon_cjk_bigram}: the index side, CJK runs as overlapping bigrams. */
@NamedComponent("newsmon_cjk_bigram")
public final class CjkBigramFilterFactory implements TokenFilterFactory {
    @Override
    public TokenStream create(TokenStream tokenStream) {
        return new CjkBigramFilter(tokenStream, false);
    }
}
