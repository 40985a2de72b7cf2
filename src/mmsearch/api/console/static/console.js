// mmsearch console: the little script the pages need (no inline handlers: the CSP allows scripts from /console/static only).
"use strict";

// <button data-copy="#id">: copy that element's value or text to the clipboard.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  const text = "value" in source && source.value !== undefined ? source.value : source.textContent;
  navigator.clipboard.writeText(text).then(() => {
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});

// The playground's picture: chosen, pasted (Ctrl+V anywhere on the page) or dropped on the picture box, it is
// read as a data URI into the form's image_url field (the API's own form of an image query) and searched.
function searchWithPicture(file) {
  const form = document.getElementById("search-form");
  const uri = form && form.querySelector("[data-picture-uri]");
  if (!uri || !file || !file.type.startsWith("image/")) return;
  const reader = new FileReader();
  reader.onload = () => {
    uri.value = reader.result;
    form.querySelector("[data-picture-name]").value = file.name || "pasted picture";
    const input = form.querySelector("[data-picture]");
    if (input) input.value = "";  // the data URI goes instead of the file
    form.requestSubmit();
  };
  reader.readAsDataURL(file);
}

document.addEventListener("change", (event) => {
  if (event.target.matches("[data-picture]") && event.target.files.length) searchWithPicture(event.target.files[0]);
});
document.addEventListener("paste", (event) => {
  const item = [...(event.clipboardData || {}).items || []].find((i) => i.type.startsWith("image/"));
  if (item) { event.preventDefault(); searchWithPicture(item.getAsFile()); }
});
document.addEventListener("dragover", (event) => {
  const box = event.target.closest && event.target.closest("[data-drop-target]");
  if (box) { event.preventDefault(); box.classList.add("dragging"); }
});
document.addEventListener("dragleave", (event) => {
  const box = event.target.closest && event.target.closest("[data-drop-target]");
  if (box) box.classList.remove("dragging");
});
document.addEventListener("drop", (event) => {
  const box = event.target.closest && event.target.closest("[data-drop-target]");
  if (!box) return;
  event.preventDefault();
  box.classList.remove("dragging");
  searchWithPicture(event.dataTransfer.files[0]);
});

// "Use my location": the browser's position into the latitude and longitude boxes.
document.addEventListener("click", (event) => {
  if (!event.target.matches("[data-geolocate]") || !navigator.geolocation) return;
  navigator.geolocation.getCurrentPosition((pos) => {
    document.querySelector("[data-lat]").value = pos.coords.latitude.toFixed(5);
    document.querySelector("[data-lon]").value = pos.coords.longitude.toFixed(5);
  });
});
