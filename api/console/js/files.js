// Output files: listed from the task's (or conversation's) file list, downloaded
// through the files routes (GET .../files/{path}). Where that route is absent (a
// deployment without Cloud Storage answers 404), a small text file's inline
// `content` is offered instead.
import { ApiError, blobUrl, download } from "./api.js";
import { errorSlot, h, showError } from "./ui.js";

export function filePath(path) {
  return path.split("/").map(encodeURIComponent).join("/");
}

function saveInline(file) {
  const blob = new Blob([file.content], { type: file.contentType || "text/plain" });
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: file.path.split("/").pop() });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** A list of files under `base` (e.g. /api/tasks/ID/files), each downloadable. */
export function fileList(base, files) {
  if (!files || !files.length) return h("p", { class: "muted" }, "No files.");
  return h("ul", { class: "files" }, files.map((file) => fileItem(base, file)));
}

function fileItem(base, file) {
  const slot = errorSlot();
  const url = `${base}/${filePath(file.path)}`;
  const name = file.path.split("/").pop();
  const skipped = file.skipped || file.reason;
  const button = h("button", { type: "button", class: "link download", dataset: { path: file.path } }, file.path);
  button.addEventListener("click", async () => {
    showError(slot, null);
    try {
      await download(url, name);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404 && typeof file.content === "string") saveInline(file);
      else showError(slot, error);
    }
  });
  const size = file.size === undefined ? "" : ` ${file.size} bytes`;
  const item = h("li", {}, button, h("span", { class: "muted" }, `${size}${file.contentType ? `, ${file.contentType}` : ""}`),
    skipped ? h("span", { class: "note" }, ` skipped: ${file.reason || "not kept"}`) : null, slot);
  if ((file.contentType || "").startsWith("image/") && !skipped) {
    blobUrl(url).then(
      (src) => item.append(h("img", { src, alt: file.path })),
      (error) => {
        if (error instanceof ApiError && error.status === 404) {
          item.append(h("p", { class: "note" }, "This deployment does not keep the file's bytes."));
        } else showError(slot, error);
      },
    );
  }
  return item;
}
