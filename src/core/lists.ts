/** Comma lists as configuration and Docker labels write them: "a, b,,c" -> ["a", "b", "c"]. */
export function splitList(value: string): string[] {
  return value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
