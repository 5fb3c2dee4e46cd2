/** Escapes text for XML element content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => XML_ESCAPES[c]!);
}

const XML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' };

/** `<name>text</name>` with the text escaped; nothing when the value is undefined or null. */
export function textElement(name: string, value: string | number | boolean | undefined | null): string {
  if (value === undefined || value === null) return '';
  return `<${name}>${escapeXml(String(value))}</${name}>`;
}

/** `<name>inner</name>` with inner already XML. */
export function element(name: string, inner: string): string {
  return `<${name}>${inner}</${name}>`;
}

/** A complete document: declaration and root element in the given namespace. */
export function xmlDocument(root: string, namespace: string | undefined, inner: string): string {
  const ns = namespace === undefined ? '' : ` xmlns="${namespace}"`;
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${root}${ns}>${inner}</${root}>`;
}
