// {{name}}: an HTTP component in JavaScript. `weft dev` serves it on
// http://127.0.0.1:8080/{{name}} and redeploys it on every save. componentize-js runs this
// module in SpiderMonkey, inside the component: requests arrive as `fetch` events, and `fetch`
// itself makes outgoing requests (to hosts the manifest's http-client link allows).

addEventListener("fetch", (event) =>
  event.respondWith(
    (async () => {
      const url = new URL(event.request.url);
      return new Response(`Hello from {{name}}! You asked for ${url.pathname}\n`, {
        headers: { "content-type": "text/plain; charset=utf-8" },
      });
    })(),
  ),
);
