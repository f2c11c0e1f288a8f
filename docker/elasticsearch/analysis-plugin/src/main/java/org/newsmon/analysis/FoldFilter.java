package org.newsmon.analysis;

import java.io.IOException;

import org.apache.lucene.analysis.TokenFilter;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.tokenattributes.CharTermAttribute;

/** Rewrites each token in its folded form (see {@link Fold}). */
final class FoldFilter extends TokenFilter {
    private final CharTermAttribute term = addAttribute(CharTermAttribute.class);

    FoldFilter(TokenStream input) {
        super(input);
    }

    @Override
    public boolean incrementToken() throws IOException {
        if (!input.incrementToken()) {
            return false;
        }
        if (Fold.foldInPlace(term.buffer(), term.length())) {
            return true;
        }
        String folded = Fold.fold(term);
        if (!folded.contentEquals(term)) {
            term.setEmpty().append(folded);
        }
        return true;
    }
}
