// Paths shown in messages: relative to the repository root when inside it.
import path from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

// The input's path relative to the repository root (absolute if outside it).
export function displayPath(file) {
  const relative = path.relative(repoRoot, path.resolve(file));
  return relative.startsWith("..") || path.isAbsolute(relative)
    ? path.resolve(file)
    : relative.split(path.sep).join("/");
}
