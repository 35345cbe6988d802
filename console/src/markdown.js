// Markdown for the console's agent replies: `marked` renders, DOMPurify sanitises.
// What a model writes is untrusted; only DOMPurify's output ever reaches the page.
import DOMPurify from "dompurify";
import { marked } from "marked";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escape = (text) => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);

marked.use({
  gfm: true,
  // Raw HTML in a reply is shown as text, never parsed: a reply is Markdown. (Parsing
  // it would also make Chromium report the page's CSP blocking any inline handler it
  // holds, even inside DOMPurify's inert document.)
  renderer: {
    html: ({ text }) => escape(text),
  },
});

// Links open outside the console and tell the target nothing about it.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

/** Sanitised HTML for `text`, as a DocumentFragment ready to append. */
export function renderMarkdown(text) {
  const html = marked.parse(String(text ?? ""), { async: false });
  return DOMPurify.sanitize(html, {
    RETURN_DOM_FRAGMENT: true,
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select"],
    FORBID_ATTR: ["style"],
  });
}
