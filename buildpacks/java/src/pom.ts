// What pom.xml says about the Java version: maven.compiler.release, else maven.compiler.target or
// maven.compiler.source, else java.version (Spring Boot's property). Read from the <properties>
// text only: a pom that computes the version elsewhere gets the default JDK.

const PROPERTIES = [
  'maven.compiler.release',
  'maven.compiler.target',
  'maven.compiler.source',
  'java.version',
];

/** javaRelease returns the Java feature release the pom asks for (e.g. 17; "1.8" is 8), if any. */
export function javaRelease(pomText: string): number | undefined {
  // Comments could hold example values.
  const text = pomText.replace(/<!--[\s\S]*?-->/g, '');
  for (const name of PROPERTIES) {
    const escaped = name.replace(/\./g, '\\.');
    const m = new RegExp(`<${escaped}>\\s*([^<\\s]+)\\s*</${escaped}>`).exec(text);
    if (!m) continue;
    const version = parseRelease(m[1]!);
    if (version !== undefined) return version;
  }
  return undefined;
}

/** parseRelease reads "17", "1.8", "21.0.2"; anything else (a ${property}) is undefined. */
export function parseRelease(value: string): number | undefined {
  const m = /^(?:1\.(\d+)|(\d+))(?:\.\d+)*$/.exec(value.trim());
  if (!m) return undefined;
  const n = Number(m[1] ?? m[2]);
  return n >= 1 && n < 1000 ? n : undefined;
}
