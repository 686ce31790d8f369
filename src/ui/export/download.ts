/** Saves a blob as a file through the browser's download (nothing is uploaded). */
export function downloadBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.rel = 'noopener';
  document.body.append(a);
  a.click();
  a.remove();
  // The download has started reading the blob; a later revoke lets slow browsers finish.
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** A file name from free text: letters, digits, dots and dashes. */
export function safeFileName(text: string): string {
  return text.replace(/[^a-z0-9._-]+/gi, '-').replace(/^-+|-+$/g, '').slice(0, 120) || 'figure';
}
