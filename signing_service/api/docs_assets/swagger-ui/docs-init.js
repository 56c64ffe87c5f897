// The service's own start-up of Swagger UI for /docs (not part of swagger-ui-dist): a file,
// not an inline script, so that the page's Content-Security-Policy allows scripts from the
// service only (api/openapi.py DOCS_CSP).
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // No third-party request: the validator badge would call validator.swagger.io.
    validatorUrl: null,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
});
