// Resolutions as the server names them: minutes ("1", "5", ... "240"), "D",
// "W", "M", with "1D", "1W", "1M" accepted as aliases (the canonical form
// is the one in topics, `bars:AAPL:D`).

/** The canonical form of a resolution: "1D" -> "D", "1W" -> "W", "1M" -> "M"; others unchanged. */
export function canonicalResolution(resolution: string): string {
  const upper = resolution.trim().toUpperCase();
  const alias = /^1([DWM])$/.exec(upper);
  return alias?.[1] ?? upper;
}

/**
 * The nominal length of one bar in seconds (a month counts 31 days). Used
 * to turn bar counts into time ranges; the server decides the real grid.
 */
export function resolutionSeconds(resolution: string): number {
  const canonical = canonicalResolution(resolution);
  switch (canonical) {
    case "D":
      return 86_400;
    case "W":
      return 7 * 86_400;
    case "M":
      return 31 * 86_400;
    default: {
      const minutes = Number(canonical);
      if (!Number.isInteger(minutes) || minutes <= 0) {
        throw new Error(`unsupported resolution ${JSON.stringify(resolution)}`);
      }
      return minutes * 60;
    }
  }
}

/** The symbol part of `EXCHANGE:SYMBOL`, upper-cased (the server's ticker form). */
export function tickerOf(symbol: string): string {
  const colon = symbol.lastIndexOf(":");
  return (colon >= 0 ? symbol.slice(colon + 1) : symbol).trim().toUpperCase();
}
