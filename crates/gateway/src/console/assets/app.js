// Taskgate console: live regions. An element with data-live="URL" is
// replaced by each server-sent event's HTML from URL (rendered and escaped
// by the server). A form being filled in is left alone until it is sent.
for (const region of document.querySelectorAll("[data-live]")) {
  const source = new EventSource(region.dataset.live);
  let pending = null;
  const apply = (html) => {
    if (region.contains(document.activeElement) && document.activeElement.value) {
      pending = html;
      return;
    }
    region.innerHTML = html;
    pending = null;
  };
  region.addEventListener("focusout", () => { if (pending !== null) apply(pending); });
  source.onmessage = (event) => apply(event.data);
  source.onopen = () => region.setAttribute("data-connected", "true");
}
