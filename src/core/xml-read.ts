/** An element of a parsed document: its local name (prefix and namespace dropped), children and text. */
export interface XmlNode {
  name: string;
  children: XmlNode[];
  /** The element's own character data, entities decoded, not trimmed. */
  text: string;
}

/** The document is not well-formed XML (the endpoint answers MalformedXML). */
export class XmlSyntaxError extends Error {}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/**
 * Parses small XML documents: the endpoint's S3 request bodies
 * (CompleteMultipartUpload, RestoreRequest, Delete, CreateBucketConfiguration)
 * and the EC2 query answers of the direct requests. Attributes are read
 * past and dropped; comments, processing instructions and the declaration are
 * skipped; CDATA is text. Throws XmlSyntaxError.
 */
export function parseXml(text: string): XmlNode {
  const stack: XmlNode[] = [];
  let root: XmlNode | undefined;
  let at = 0;
  while (at < text.length) {
    const lt = text.indexOf('<', at);
    const chars = text.slice(at, lt < 0 ? text.length : lt);
    if (stack.length > 0) stack[stack.length - 1]!.text += decodeEntities(chars);
    else if (chars.trim() !== '') throw new XmlSyntaxError('text outside the root element');
    if (lt < 0) break;
    if (text.startsWith('<?', lt)) at = endOf(text, '?>', lt);
    else if (text.startsWith('<!--', lt)) at = endOf(text, '-->', lt);
    else if (text.startsWith('<![CDATA[', lt)) {
      const end = endOf(text, ']]>', lt);
      if (stack.length === 0) throw new XmlSyntaxError('CDATA outside the root element');
      stack[stack.length - 1]!.text += text.slice(lt + 9, end - 3);
      at = end;
    } else if (text.startsWith('<!', lt)) throw new XmlSyntaxError('document type declarations are not accepted');
    else if (text.startsWith('</', lt)) {
      const end = endOf(text, '>', lt);
      const name = localName(text.slice(lt + 2, end - 1).trim());
      const open = stack.pop();
      if (open === undefined || open.name !== name) throw new XmlSyntaxError(`unexpected closing tag ${name}`);
      at = end;
    } else {
      const end = endOf(text, '>', lt);
      const selfClosing = text[end - 2] === '/';
      const inner = text.slice(lt + 1, selfClosing ? end - 2 : end - 1);
      const rawName = /^[^\s/>]+/.exec(inner)?.[0];
      if (rawName === undefined) throw new XmlSyntaxError('an element without a name');
      const node: XmlNode = { name: localName(rawName), children: [], text: '' };
      if (stack.length > 0) stack[stack.length - 1]!.children.push(node);
      else if (root === undefined) root = node;
      else throw new XmlSyntaxError('more than one root element');
      if (!selfClosing) stack.push(node);
      at = end;
    }
  }
  if (root === undefined) throw new XmlSyntaxError('no root element');
  if (stack.length > 0) throw new XmlSyntaxError(`element ${stack[stack.length - 1]!.name} is not closed`);
  return root;
}

/** The first child of that name. */
export function childOf(node: XmlNode, name: string): XmlNode | undefined {
  return node.children.find((child) => child.name === name);
}

/** Every child of that name, in document order. */
export function childrenOf(node: XmlNode, name: string): XmlNode[] {
  return node.children.filter((child) => child.name === name);
}

/** The trimmed text of the first child of that name. */
export function childText(node: XmlNode, name: string): string | undefined {
  return childOf(node, name)?.text.trim();
}

function endOf(text: string, terminator: string, from: number): number {
  const found = text.indexOf(terminator, from);
  if (found < 0) throw new XmlSyntaxError(`unterminated markup at ${from}`);
  return found + terminator.length;
}

function localName(name: string): string {
  const colon = name.indexOf(':');
  return colon < 0 ? name : name.slice(colon + 1);
}

function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);|&/g, (match, entity: string | undefined) => {
    if (entity === undefined) throw new XmlSyntaxError('a bare & in text');
    if (entity.startsWith('#x')) return String.fromCodePoint(parseInt(entity.slice(2), 16));
    if (entity.startsWith('#')) return String.fromCodePoint(parseInt(entity.slice(1), 10));
    const decoded = ENTITIES[entity];
    if (decoded === undefined) throw new XmlSyntaxError(`unknown entity ${match}`);
    return decoded;
  });
}
