// Starts Swagger UI on /docs (a file, not an inline script: the CSP allows no inline code).
"use strict";

(() => {
  const node = document.getElementById("swagger-ui");
  const csrf = () => {
    const m = document.cookie.match(/(?:^|; )stacklab_csrf=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  };
  window.ui = SwaggerUIBundle({
    url: node.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null, // no calls to an outside validator
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    // "Try it out" with the sign-in cookie passes the CSRF check like the dashboard's own JS.
    requestInterceptor: (request) => {
      request.headers["X-CSRF-Token"] = csrf();
      return request;
    },
  });
})();
