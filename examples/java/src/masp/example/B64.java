package masp.example;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.Base64;

/**
 * Strict base64url (RFC 4648 section 5) as JOSE uses it (RFC 7515 section 2): no padding, no whitespace, and
 * only the canonical encoding of each byte string (unused trailing bits must be zero), so one
 * byte string has exactly one text form.
 */
public final class B64 {
    private static final Base64.Encoder ENC = Base64.getUrlEncoder().withoutPadding();
    private static final Base64.Decoder DEC = Base64.getUrlDecoder();

    private B64() {
    }

    public static String encode(byte[] b) {
        return ENC.encodeToString(b);
    }

    public static String encode(String utf8) {
        return encode(utf8.getBytes(StandardCharsets.UTF_8));
    }

    /** Decodes, refusing padding, characters outside [A-Za-z0-9_-] and non-canonical forms. */
    public static byte[] decode(String s) {
        if (s == null) {
            throw new IllegalArgumentException("base64url: missing");
        }
        if (s.length() % 4 == 1) {
            throw new IllegalArgumentException("base64url: impossible length");
        }
        for (int k = 0; k < s.length(); k++) {
            char c = s.charAt(k);
            boolean ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                    || c == '-' || c == '_';
            if (!ok) {
                throw new IllegalArgumentException("base64url: bad character");
            }
        }
        byte[] b = DEC.decode(s);
        if (!encode(b).equals(s)) {
            throw new IllegalArgumentException("base64url: non-canonical encoding");
        }
        return b;
    }

    /** Decodes to text, refusing bytes that are not well-formed UTF-8. */
    public static String decodeUtf8(String s) {
        return utf8(decode(s));
    }

    /** Strict UTF-8 decoding: malformed input is an error, not a replacement character. */
    public static String utf8(byte[] b) {
        try {
            return StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(b)).toString();
        } catch (CharacterCodingException e) {
            throw new IllegalArgumentException("not UTF-8");
        }
    }
}
