// Figures as standalone files: the SVG with the styles the page applied written inline (so it
// looks the same outside the app), and a PNG drawn from that SVG on a canvas.

/** Presentation properties copied from the computed style onto each element. */
const STYLE_PROPS = [
  'fill',
  'fill-opacity',
  'stroke',
  'stroke-width',
  'stroke-opacity',
  'stroke-dasharray',
  'stroke-linecap',
  'stroke-linejoin',
  'opacity',
  'font-family',
  'font-size',
  'font-weight',
  'font-style',
  'text-anchor',
  'dominant-baseline',
  'visibility',
  'display',
] as const;

const SVG_NS = 'http://www.w3.org/2000/svg';

/** A copy of the element with the page's computed styles written inline and no classes. */
function styledClone(svg: SVGSVGElement): SVGSVGElement {
  const clone = svg.cloneNode(true) as SVGSVGElement;
  const source = [svg, ...Array.from(svg.querySelectorAll('*'))];
  const target = [clone, ...Array.from(clone.querySelectorAll('*'))];
  const view = svg.ownerDocument.defaultView;
  source.forEach((el, i) => {
    const out = target[i];
    if (!out || !view) return;
    const computed = view.getComputedStyle(el);
    // Through CSSOM: the page's Content-Security-Policy refuses style attributes set as text.
    const style = (out as SVGElement).style;
    for (const p of STYLE_PROPS) {
      const v = computed.getPropertyValue(p);
      if (v !== '') style.setProperty(p, v);
    }
    out.removeAttribute('class');
  });
  return clone;
}

/** Namespaces, size and a white background: the root of a standalone SVG file, as text. */
function standalone(root: SVGSVGElement, width: number, height: number): string {
  root.setAttribute('xmlns', SVG_NS);
  root.setAttribute('xmlns:xlink', 'http://www.w3.org/1999/xlink');
  root.setAttribute('width', String(width));
  root.setAttribute('height', String(height));
  if (!root.getAttribute('viewBox')) root.setAttribute('viewBox', `0 0 ${width} ${height}`);
  const background = root.ownerDocument.createElementNS(SVG_NS, 'rect');
  background.setAttribute('width', '100%');
  background.setAttribute('height', '100%');
  background.setAttribute('fill', '#ffffff');
  root.insertBefore(background, root.firstChild);
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(root);
}

/** The SVG element as a standalone document: styles inline, size and namespaces set, a white background. */
export function serializeSvg(svg: SVGSVGElement): string {
  const { width, height } = svgSize(svg);
  return standalone(styledClone(svg), width, height);
}

/** Several SVG elements (a chart and its colour legend) stacked top to bottom as one standalone document. */
export function serializeFigure(parts: readonly SVGSVGElement[], gap = 8): { text: string; width: number; height: number } {
  const [first] = parts;
  if (!first) throw new Error('the figure is not drawn yet');
  if (parts.length === 1) return { text: serializeSvg(first), ...svgSize(first) };
  const root = first.ownerDocument.createElementNS(SVG_NS, 'svg');
  let y = 0;
  let width = 0;
  for (const part of parts) {
    const size = svgSize(part);
    const clone = styledClone(part);
    clone.setAttribute('x', '0');
    clone.setAttribute('y', String(y));
    clone.setAttribute('width', String(size.width));
    clone.setAttribute('height', String(size.height));
    root.append(clone);
    y += size.height + gap;
    width = Math.max(width, size.width);
  }
  const height = y - gap;
  return { text: standalone(root, width, height), width, height };
}

export function svgSize(svg: SVGSVGElement): { width: number; height: number } {
  const box = svg.getBoundingClientRect();
  const width = Number(svg.getAttribute('width')) || Math.ceil(box.width) || 300;
  const height = Number(svg.getAttribute('height')) || Math.ceil(box.height) || 150;
  return { width, height };
}

/** Draws serialized SVG text on a canvas at `scale` times its size and encodes it as PNG. */
export async function svgToPng(svgText: string, width: number, height: number, scale = 2): Promise<Blob> {
  const url = URL.createObjectURL(new Blob([svgText], { type: 'image/svg+xml' }));
  try {
    const img = new Image();
    img.decoding = 'sync';
    await new Promise<void>((resolve, reject) => {
      img.onload = () => resolve();
      img.onerror = () => reject(new Error('the figure could not be drawn as an image'));
      img.src = url;
    });
    const canvas = document.createElement('canvas');
    canvas.width = Math.round(width * scale);
    canvas.height = Math.round(height * scale);
    const ctx = canvas.getContext('2d');
    if (!ctx) throw new Error('no 2D canvas to draw the figure on');
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    return await new Promise<Blob>((resolve, reject) => canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('the PNG could not be encoded'))), 'image/png'));
  } finally {
    URL.revokeObjectURL(url);
  }
}
