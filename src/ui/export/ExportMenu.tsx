import { useRef, useState } from 'react';
import { toCsv, type Cell } from '../../analysis/report/csv.ts';
import { downloadBlob, safeFileName } from './download.ts';
import { serializeFigure, svgToPng } from './svg.ts';

export interface ExportTable {
  header: string[];
  rows: Cell[][];
}

interface Props {
  /** The file name without extension, and the menu's test id (`export-<name>`). */
  name: string;
  /** Finds the figure to export from the menu's own element, when a button is pressed; several SVGs (a chart and its legend) are stacked. */
  svg?: (menu: HTMLElement) => SVGSVGElement | readonly SVGSVGElement[] | null | undefined;
  table?: () => ExportTable;
}

/** Saves a figure as SVG or PNG, and a table as CSV: files written in the browser, nothing uploaded. */
export function ExportMenu({ name, svg, table }: Props) {
  const [error, setError] = useState<string | null>(null);
  const menu = useRef<HTMLDetailsElement>(null);
  const file = safeFileName(name);
  const run = (action: () => Promise<void> | void) => {
    setError(null);
    Promise.resolve()
      .then(action)
      .catch((e: unknown) => setError(e instanceof Error ? e.message : String(e)));
  };
  const figure = () => {
    const found = menu.current && svg?.(menu.current);
    return serializeFigure(found ? (Array.isArray(found) ? found : [found as SVGSVGElement]) : []);
  };
  return (
    <details className="export-menu" data-testid={`export-${name}`} ref={menu}>
      <summary>Export</summary>
      <div className="export-items">
        {svg && (
          <>
            <button type="button" onClick={() => run(() => downloadBlob(new Blob([figure().text], { type: 'image/svg+xml' }), `${file}.svg`))}>
              SVG
            </button>
            <button
              type="button"
              onClick={() =>
                run(async () => {
                  const f = figure();
                  downloadBlob(await svgToPng(f.text, f.width, f.height), `${file}.png`);
                })
              }
            >
              PNG
            </button>
          </>
        )}
        {table && (
          <button
            type="button"
            onClick={() =>
              run(() => {
                const t = table();
                downloadBlob(new Blob([toCsv(t.header, t.rows)], { type: 'text/csv;charset=utf-8' }), `${file}.csv`);
              })
            }
          >
            CSV
          </button>
        )}
      </div>
      {error && <p className="error small">{error}</p>}
    </details>
  );
}
