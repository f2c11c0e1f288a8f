package org.newsmon.analysis;

import org.apache.lucene.analysis.TokenStream;
import org.elasticsearch.plugin.NamedComponent;
import org.elasticsearch.plugin.analysis.TokenFilterFactory;

/** {@code newsmon_fold}: NFKC, case folding and Traditional to Simplified Chinese. */
@NamedComponent("newsmon_fold")
public final class FoldFilterFactory implements TokenFilterFactory {
    @Override
    public TokenStream create(TokenStream tokenStream) {
        return new FoldFilter(tokenStream);
    }

    // Also in normalizers, so term-level queries (wildcard, prefix) are folded like the text.
    @Override
    public TokenStream normalize(TokenStream tokenStream) {
        return new FoldFilter(tokenStream);
    }
}
