package org.newsmon.analysis;

import static org.apache.lucene.analysis.standard.StandardTokenizer.HANGUL;
import static org.apache.lucene.analysis.standard.StandardTokenizer.HIRAGANA;
import static org.apache.lucene.analysis.standard.StandardTokenizer.IDEOGRAPHIC;
import static org.apache.lucene.analysis.standard.StandardTokenizer.KATAKANA;
import static org.apache.lucene.analysis.standard.StandardTokenizer.TOKEN_TYPES;

import java.io.IOException;
import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.Set;

import org.apache.lucene.analysis.TokenFilter;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.tokenattributes.CharTermAttribute;
import org.apache.lucene.analysis.tokenattributes.OffsetAttribute;
import org.apache.lucene.analysis.tokenattributes.PositionIncrementAttribute;
import org.apache.lucene.analysis.tokenattributes.PositionLengthAttribute;
import org.apache.lucene.analysis.tokenattributes.TypeAttribute;

/**
 * Turns each run of adjacent Han, kana or Hangul characters from the standard tokenizer into
 * overlapping bigrams (a lone character stays a unigram); other tokens pass unchanged.
 *
 * <p>With {@code wholeRuns} (the query side) a run of three or more characters is also emitted
 * as one token spanning its bigrams. That makes the token stream a graph, and Lucene's query
 * builder turns each path of a graph into a phrase: an unquoted 两用物项 becomes the phrase
 * "两用 用物 物项" (or the run itself, which no document holds), not 两用 OR 用物 OR 物项.
 */
final class CjkBigramFilter extends TokenFilter {
    static final String SINGLE = "<SINGLE>";
    static final String DOUBLE = "<DOUBLE>";
    static final String RUN = "<CJK_RUN>";
    private static final Set<String> CJK_TYPES =
        Set.of(TOKEN_TYPES[IDEOGRAPHIC], TOKEN_TYPES[HIRAGANA], TOKEN_TYPES[KATAKANA], TOKEN_TYPES[HANGUL]);

    private record Out(String text, int start, int end, int positionIncrement, int positionLength, String type) {}

    private final boolean wholeRuns;
    private final CharTermAttribute term = addAttribute(CharTermAttribute.class);
    private final OffsetAttribute offset = addAttribute(OffsetAttribute.class);
    private final TypeAttribute type = addAttribute(TypeAttribute.class);
    private final PositionIncrementAttribute positionIncrement = addAttribute(PositionIncrementAttribute.class);
    private final PositionLengthAttribute positionLength = addAttribute(PositionLengthAttribute.class);

    // The current run: its code points and each one's offsets.
    private int[] codePoints = new int[32];
    private int[] starts = new int[32];
    private int[] ends = new int[32];
    private int runLength;
    private int runPositionIncrement;
    private int lastEnd;

    private final ArrayDeque<Out> queue = new ArrayDeque<>();
    private State pending;
    private boolean exhausted;

    CjkBigramFilter(TokenStream input, boolean wholeRuns) {
        super(input);
        this.wholeRuns = wholeRuns;
    }

    @Override
    public boolean incrementToken() throws IOException {
        while (true) {
            Out next = queue.poll();
            if (next != null) {
                emit(next);
                return true;
            }
            if (pending != null) {
                restoreState(pending);
                pending = null;
                return true;
            }
            if (exhausted) {
                return false;
            }
            if (!input.incrementToken()) {
                exhausted = true;
                flushRun();
            } else if (CJK_TYPES.contains(type.type())) {
                // Characters separated by anything (space, punctuation) are not one word.
                if (runLength > 0 && offset.startOffset() != lastEnd) {
                    flushRun();
                }
                if (runLength == 0) {
                    runPositionIncrement = positionIncrement.getPositionIncrement();
                }
                appendToRun();
                lastEnd = offset.endOffset();
            } else if (runLength == 0) {
                return true; // nothing held back: the token passes as it is, with no state to copy
            } else {
                flushRun();
                pending = captureState();
            }
        }
    }

    private void appendToRun() {
        int start = offset.startOffset();
        int end = offset.endOffset();
        int length = term.length();
        for (int i = 0; i < length; ) {
            int cp = Character.codePointAt(term, i);
            int next = i + Character.charCount(cp);
            if (runLength == codePoints.length) {
                codePoints = Arrays.copyOf(codePoints, runLength * 2);
                starts = Arrays.copyOf(starts, runLength * 2);
                ends = Arrays.copyOf(ends, runLength * 2);
            }
            // Folding may have changed the token's length; keep offsets inside the token.
            codePoints[runLength] = cp;
            starts[runLength] = Math.min(start + i, end);
            ends[runLength] = next >= length ? end : Math.min(start + next, end);
            runLength++;
            i = next;
        }
    }

    private void flushRun() {
        int n = runLength;
        runLength = 0;
        if (n == 0) {
            return;
        }
        if (n == 1) {
            queue.add(new Out(new String(codePoints, 0, 1), starts[0], ends[0], runPositionIncrement, 1, SINGLE));
            return;
        }
        boolean spanning = wholeRuns && n >= 3;
        if (spanning) {
            queue.add(new Out(new String(codePoints, 0, n), starts[0], ends[n - 1], runPositionIncrement, n - 1, RUN));
        }
        for (int i = 0; i < n - 1; i++) {
            int increment = i > 0 ? 1 : spanning ? 0 : runPositionIncrement;
            queue.add(new Out(new String(codePoints, i, 2), starts[i], ends[i + 1], increment, 1, DOUBLE));
        }
    }

    private void emit(Out out) {
        clearAttributes();
        term.setEmpty().append(out.text());
        offset.setOffset(out.start(), out.end());
        positionIncrement.setPositionIncrement(out.positionIncrement());
        positionLength.setPositionLength(out.positionLength());
        type.setType(out.type());
    }

    @Override
    public void reset() throws IOException {
        super.reset();
        runLength = 0;
        lastEnd = 0;
        queue.clear();
        pending = null;
        exhausted = false;
    }
}
