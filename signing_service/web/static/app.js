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
    var button = form.querySelector("[data-submit]");
    var busy = form.querySelector("[data-busy]");
    function show() {
      chosen.textContent = input.files && input.files.length ? "Đã chọn: " + input.files[0].name : "";
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
      if (e.dataTransfer && e.dataTransfer.files.length) {
        input.files = e.dataTransfer.files;
        show();
      }
    });
    form.addEventListener("submit", function (e) {
      if (!input.files || !input.files.length) {
        e.preventDefault();
        chosen.textContent = "Bạn chưa chọn tệp PDF.";
        input.focus();
        return;
      }
      button.disabled = true;
      busy.hidden = false;
    });
  });
})();
