// The greet example in JavaScript: answers GET /greet-js?name=NAME&tags=a,b by calling the
// `greet` export of the component its link names (the Rust greeter), in the same process, and
// answering with what it returned. The string crosses from JS to Rust and back unchanged.

import { greet } from "weft:greet/greeter@0.1.0";

addEventListener("fetch", (event) =>
  event.respondWith(
    (async () => {
      const url = new URL(event.request.url);
      const name = url.searchParams.get("name") ?? "world";
      const tags = (url.searchParams.get("tags") ?? "").split(",").filter((t) => t !== "");
      const greeting = greet(name, tags);
      const body = `${greeting.message} length=${greeting.length} tags=${greeting.tags.join(",")} (asked from JavaScript)\n`;
      return new Response(body, {
        headers: { "content-type": "text/plain; charset=utf-8" },
      });
    })(),
  ),
);
