// Progressive enhancement only: the form works without this file.
(function () {
  "use strict";
  document.querySelectorAll("[hidden].js-only").forEach(function (el) { el.hidden = false; });
  var printButton = document.querySelector("[data-print]");
  if (printButton) {
    printButton.hidden = false;
    printButton.addEventListener("click", function () { window.print(); });
  }
  // Print: open the technical details so the printed report is complete.
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details.tech").forEach(function (d) { d.open = true; });
  });
  document.querySelectorAll("form.upload").forEach(function (form) {
    var input = form.querySelector("input[type=file]");
    var zone = form.querySelector("[data-drop]");
    var chosen = form.querySelector("[data-chosen]");
    var error = form.querySelector("[data-error]");
    var errorText = form.querySelector("[data-error-text]");
    var button = form.querySelector("[data-submit]");
    var busy = form.querySelector("[data-busy]");
    // One error style, whoever found the error: the server's box, shown here by the script.
    function fail(message) {
      errorText.textContent = message;
      error.hidden = false;
      zone.classList.add("has-error");
      input.setAttribute("aria-invalid", "true");
      var described = input.getAttribute("aria-describedby") || "";
      if (described.split(" ").indexOf("tep-loi") < 0) {
        input.setAttribute("aria-describedby", (described + " tep-loi").trim());
      }
      input.focus();
    }
    function clear() {
      error.hidden = true;
      zone.classList.remove("has-error");
      input.removeAttribute("aria-invalid");
    }
    function show() {
      if (input.files && input.files.length) {
        chosen.textContent = "Đã chọn: " + input.files[0].name;
        clear();
      }
    }
    input.addEventListener("change", show);
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (e) { e.preventDefault(); zone.classList.add("dragging"); });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function () { zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (e) {
      e.preventDefault();
      var files = e.dataTransfer && e.dataTransfer.files;
      if (!files || !files.length) { return; }
      if (files.length > 1) {
        // The form sends one file; two would be refused after the upload (red team F14).
        fail("Mỗi lần chỉ xác minh được một tệp PDF. Bạn đã kéo thả " + files.length +
          " tệp: hãy kéo thả hoặc chọn từng tệp một.");
        return;
      }
      input.files = files;
      show();
    });
    form.addEventListener("submit", function (e) {
      if (!input.files || !input.files.length) {
        e.preventDefault();
        fail("Bạn chưa chọn tệp PDF nào.");
        return;
      }
      button.disabled = true;
      busy.hidden = false;
    });
  });
})();
