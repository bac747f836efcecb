// The API's /docs page: Swagger UI over the service's own OpenAPI document.
// A file rather than an inline script, so the page's CSP allows no inline code.
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // The token is entered with "Authorize" (the bearer scheme) and kept only
    // in this page's memory; nothing is sent anywhere but this service.
    persistAuthorization: false,
    tryItOutEnabled: false,
  });
});
