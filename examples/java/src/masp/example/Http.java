package masp.example;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;

/** A thin wrapper over java.net.http for the broker's JSON and JOSE endpoints. */
public final class Http {
    private final String base;
    private final HttpClient client = HttpClient.newBuilder()
            .connectTimeout(Duration.ofSeconds(10))
            .followRedirects(HttpClient.Redirect.NEVER)
            .build();

    public Http(String baseUrl) {
        this.base = baseUrl.endsWith("/") ? baseUrl.substring(0, baseUrl.length() - 1) : baseUrl;
    }

    /** An HTTP answer: status, media type (without parameters) and the body as text. */
    public static final class Response {
        public final int status;
        public final String mediaType;
        public final String body;

        Response(int status, String mediaType, String body) {
            this.status = status;
            this.mediaType = mediaType;
            this.body = body;
        }

        public Map<String, Object> json() {
            return Json.parseObject(body);
        }

        /** The RFC 9457 problem's {@code code}, or null if this is not a problem document. */
        public String problemCode() {
            if (!"application/problem+json".equals(mediaType)) {
                return null;
            }
            Object c = json().get("code");
            return c instanceof String ? (String) c : null;
        }

        @Override
        public String toString() {
            String b = body.length() > 600 ? body.substring(0, 600) + "..." : body;
            return status + " " + mediaType + " " + b;
        }
    }

    /** GET; {@code bearer} may be null for the public endpoints. */
    public Response get(String path, String bearer) throws Exception {
        HttpRequest.Builder r = HttpRequest.newBuilder(URI.create(base + path))
                .timeout(Duration.ofSeconds(30)).GET();
        if (bearer != null) {
            r.header("Authorization", "Bearer " + bearer);
        }
        return send(r.build());
    }

    /** POST a body of the given content type. */
    public Response post(String path, String bearer, String contentType, String accept,
            String body) throws Exception {
        HttpRequest.Builder r = HttpRequest.newBuilder(URI.create(base + path))
                .timeout(Duration.ofSeconds(30))
                .header("Content-Type", contentType)
                .POST(HttpRequest.BodyPublishers.ofString(body, StandardCharsets.US_ASCII));
        if (accept != null) {
            r.header("Accept", accept);
        }
        if (bearer != null) {
            r.header("Authorization", "Bearer " + bearer);
        }
        return send(r.build());
    }

    private Response send(HttpRequest req) throws Exception {
        HttpResponse<byte[]> res = client.send(req, HttpResponse.BodyHandlers.ofByteArray());
        String type = res.headers().firstValue("Content-Type").orElse("");
        int semi = type.indexOf(';');
        String media = (semi < 0 ? type : type.substring(0, semi)).trim().toLowerCase();
        return new Response(res.statusCode(), media, new String(res.body(), StandardCharsets.UTF_8));
    }
}
