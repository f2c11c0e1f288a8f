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

    static String fold(CharSequence text) {
        String normal = NFKC_CASEFOLD.isNormalized(text) ? text.toString() : NFKC_CASEFOLD.normalize(text);
        char[] chars = normal.toCharArray();
        for (int i = 0; i < chars.length; i++) {
            chars[i] = SIMPLIFIED[chars[i]];
        }
        return new String(chars);
    }
}
