package org.newsmon.analysis;

import com.ibm.icu.text.Normalizer2;
import com.ibm.icu.text.Transliterator;

/**
 * The one form both documents and queries take: NFKC with case folding, then Traditional to
 * Simplified Chinese character by character, so that 兩用物項 and 两用物项 index alike.
 */
final class Fold {
    private static final Normalizer2 NFKC_CASEFOLD = Normalizer2.getNFKCCasefoldInstance();
    // Per-character table, computed once per node: the transliterator is slow per token and
    // not safe to share between threads, a table is both fast and immutable.
    private static final char[] SIMPLIFIED = simplifiedTable();
    // Per character, its folded form when it folds alone into one character; NOT_ALONE otherwise.
    private static final int NOT_ALONE = -1;
    private static final int[] ALONE = aloneTable();

    private Fold() {}

    private static char[] simplifiedTable() {
        Transliterator t2s = Transliterator.getInstance("Traditional-Simplified");
        char[] table = new char[Character.MAX_VALUE + 1];
        for (int c = 0; c < table.length; c++) {
            table[c] = (char) c;
        }
        // CJK Extension A and the Unified Ideographs; compatibility ideographs are NFKC's job.
        for (int c = 0x3400; c <= 0x9FFF; c++) {
            String out = t2s.transliterate(String.valueOf((char) c));
            if (out.length() == 1) {
                table[c] = out.charAt(0);
            }
        }
        return table;
    }

    /**
     * A character with a normalization boundary before it never interacts with the one before,
     * so a token made only of such characters normalizes character by character: most tokens
     * (every ASCII word) fold through this table, without a String per token.
     */
    private static int[] aloneTable() {
        int[] table = new int[Character.MAX_VALUE + 1];
        for (int c = 0; c < table.length; c++) {
            table[c] = NOT_ALONE;
            if (Character.isSurrogate((char) c) || !NFKC_CASEFOLD.hasBoundaryBefore(c)) {
                continue;
            }
            String normal = NFKC_CASEFOLD.normalize(String.valueOf((char) c));
            if (normal.length() == 1) {
                table[c] = SIMPLIFIED[normal.charAt(0)];
            }
        }
        return table;
    }

    /** Folds buffer[0, length) in place when every character folds alone; false (buffer untouched) otherwise. */
    static boolean foldInPlace(char[] buffer, int length) {
        for (int i = 0; i < length; i++) {
            if (ALONE[buffer[i]] == NOT_ALONE) {
                return false;
            }
        }
        for (int i = 0; i < length; i++) {
            buffer[i] = (char) ALONE[buffer[i]];
        }
        return true;
    }

    static String fold(CharSequence text) {
        String normal = NFKC_CASEFOLD.isNormalized(text) ? text.toString() : NFKC_CASEFOLD.normalize(text);
        char[] chars = normal.toCharArray();
        for (int i = 0; i < chars.length; i++) {
            chars[i] = SIMPLIFIED[chars[i]];
        }
        return new String(chars);
    }
}
