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

/**
 * The files under `base` (e.g. /api/tasks/ID/files), each downloadable, all of them
 * as one zip, and those that were not kept with the reason.
 */
export function fileList(base, files, skipped = []) {
  if (!files || !files.length) {
    return h("div", {}, h("p", { class: "muted" }, "No files."), skippedList(skipped));
  }
  const slot = errorSlot();
  const all = h("button", { type: "button", class: "secondary", id: "download-all" }, "Download all (zip)");
  all.addEventListener("click", async () => {
    showError(slot, null);
    try {
      await download(`${base}?archive=zip`, "files.zip");
    } catch (error) {
      showError(slot, error);
    }
  });
  return h("div", {}, h("ul", { class: "files" }, files.map((file) => fileItem(base, file))), skippedList(skipped), all, slot);
}

function skippedList(skipped) {
  if (!skipped || !skipped.length) return null;
  return h("ul", { class: "files skipped" }, skipped.map((entry) =>
    h("li", { class: "note" }, `${entry.path}: not kept (${entry.reason || "skipped"})`)));
}

function fileItem(base, file) {
  const slot = errorSlot();
  const url = `${base}/${filePath(file.path)}`;
  const name = file.path.split("/").pop();
  const skipped = Boolean(file.skipped);
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
    skipped ? h("span", { class: "note" }, ` not kept: ${file.reason || "skipped"}`) : null, slot);
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
