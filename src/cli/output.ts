/** Readable tables for people, JSON for machines. */

export type Row = Record<string, unknown>;

function cell(value: unknown): string {
  if (value === undefined || value === null) return "-";
  if (Array.isArray(value)) return value.length ? value.join(",") : "-";
  if (typeof value === "boolean") return value ? "yes" : "no";
  return String(value);
}

/** A table with a header row; columns as wide as their widest cell. */
export function table(rows: Row[], columns?: string[]): string {
  const cols = columns ?? [...new Set(rows.flatMap((r) => Object.keys(r)))];
  if (!rows.length) return "(none)";
  const cells = rows.map((r) => cols.map((c) => cell(r[c])));
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (parts: string[]) => parts.map((p, i) => (i === parts.length - 1 ? p : p.padEnd(widths[i]!))).join("  ");
  return [line(cols.map((c) => c.toUpperCase())), ...cells.map(line)].join("\n");
}

/** "key: value" lines, keys aligned. */
export function fields(record: Row): string {
  const keys = Object.keys(record).filter((k) => record[k] !== undefined);
  const width = Math.max(0, ...keys.map((k) => k.length));
  return keys.map((k) => `${(k + ":").padEnd(width + 1)} ${cell(record[k])}`).join("\n");
}
