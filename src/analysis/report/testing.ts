// A strict check that text is well-formed XML of the kind the SVG writer emits (elements,
// attributes in double quotes, the five entities and numeric references): for tests, with no
// XML parser in Node.

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

const NAME = /^[A-Za-z_][\w.:-]*$/;

function unescape(text: string, where: string): string {
  return text.replace(/&([^;\s]*);?/g, (m, body: string) => {
    if (!m.endsWith(';')) throw new Error(`${where}: bare "&"`);
    const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
    if (body in named) return named[body]!;
    const num = /^#(x[0-9a-fA-F]+|\d+)$/.exec(body);
    if (!num) throw new Error(`${where}: unknown entity &${body};`);
    return String.fromCodePoint(num[1]!.startsWith('x') ? parseInt(num[1]!.slice(1), 16) : Number(num[1]));
  });
}

/** Parses the document; throws naming what is malformed. */
export function parseXml(source: string): XmlElement {
  let rest = source.replace(/^<\?xml[^?]*\?>\s*/, '');
  const root: XmlElement = { name: '#document', attrs: {}, children: [], text: '' };
  const stack: XmlElement[] = [root];
  while (rest.length > 0) {
    const lt = rest.indexOf('<');
    const chunk = lt === -1 ? rest : rest.slice(0, lt);
    if (chunk.includes('>')) throw new Error(`stray ">" in text near "${chunk.slice(0, 40)}"`);
    stack.at(-1)!.text += unescape(chunk, 'text');
    if (lt === -1) break;
    const gt = rest.indexOf('>', lt);
    if (gt === -1) throw new Error('unterminated tag');
    const tag = rest.slice(lt + 1, gt);
    rest = rest.slice(gt + 1);
    if (tag.startsWith('/')) {
      const open = stack.pop();
      if (!open || open === root || open.name !== tag.slice(1).trim()) throw new Error(`closing </${tag.slice(1)}> does not match <${open?.name ?? 'nothing'}>`);
      continue;
    }
    const selfClosing = tag.endsWith('/');
    const body = selfClosing ? tag.slice(0, -1) : tag;
    const m = /^([^\s]+)([\s\S]*)$/.exec(body);
    if (!m || !NAME.test(m[1]!)) throw new Error(`bad tag <${tag.slice(0, 40)}>`);
    const el: XmlElement = { name: m[1]!, attrs: {}, children: [], text: '' };
    let attrs = m[2]!.trim();
    while (attrs.length > 0) {
      const a = /^([A-Za-z_][\w.:-]*)="([^"<]*)"\s*/.exec(attrs);
      if (!a) throw new Error(`bad attribute in <${el.name}> near "${attrs.slice(0, 40)}"`);
      if (a[1]! in el.attrs) throw new Error(`attribute "${a[1]}" repeated in <${el.name}>`);
      el.attrs[a[1]!] = unescape(a[2]!, `attribute ${a[1]}`);
      attrs = attrs.slice(a[0].length);
    }
    stack.at(-1)!.children.push(el);
    if (!selfClosing) stack.push(el);
  }
  if (stack.length !== 1) throw new Error(`<${stack.at(-1)!.name}> is never closed`);
  if (root.children.length !== 1 || root.text.trim() !== '') throw new Error('the document must have exactly one root element');
  return root.children[0]!;
}

/** Every element below `el` (itself included) with this name. */
export function findAll(el: XmlElement, name: string): XmlElement[] {
  return [...(el.name === name ? [el] : []), ...el.children.flatMap((c) => findAll(c, name))];
}
