import { UsageError } from '../internal/errors.ts';
import type { Image } from '../oci/image.ts';

/**
 * The label naming a run image's flavour ("default", "shell", ...). kiln's stack images carry it
 * (src/stack/image.ts StackLabel.Flavour); app images inherit it from their run image.
 */
export const FLAVOUR_LABEL = 'io.kiln.stack.flavour';

/** What a flavour name looks like (stack.toml keys under [run.flavours]). */
const FLAVOUR_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/**
 * isFlavourName tells a flavour name (`shell`) from an image reference: a reference with a
 * registry, a path, a tag, a digest or a transport (`oci:`, `docker://`) is never a flavour name.
 */
export function isFlavourName(choice: string): boolean {
  return FLAVOUR_NAME.test(choice);
}

/** flavourOfImage is the flavour label of an image, if it has one. */
export async function flavourOfImage(image: Image): Promise<string | undefined> {
  const cfg = await image.configFile();
  const v = cfg.config?.Labels?.[FLAVOUR_LABEL];
  return typeof v === 'string' && FLAVOUR_NAME.test(v) ? v : undefined;
}

/** RunImageChoice is what `--run-image` (or project.toml) resolved to. */
export interface RunImageChoice {
  /** The image name to build on (recorded in the app image: rebase follows it). */
  readonly image: string;
  /** The flavour, when the choice was a flavour name. */
  readonly flavour?: string;
}

/**
 * resolveRunImageChoice turns a `--run-image` value into an image name. A flavour name (`shell`)
 * selects the builder's run image whose flavour label says so (`runImages` in the builder's
 * order; `open` reads one); anything else is an image reference and is used as given. A flavour
 * name that no run image of the builder has is an error naming the flavours there are, rather than
 * a lookup of a Docker Hub image of that name.
 */
export async function resolveRunImageChoice(
  choice: string,
  runImages: readonly string[],
  open: (name: string) => Promise<Image>,
  what: { source: string; builder: string },
): Promise<RunImageChoice> {
  if (!isFlavourName(choice)) return { image: choice };
  const seen: string[] = [];
  for (const name of runImages) {
    let flavour: string | undefined;
    try {
      flavour = await flavourOfImage(await open(name));
    } catch {
      continue; // An unreadable mirror or image: the others may still have the flavour.
    }
    if (flavour === choice) return { image: name, flavour };
    if (flavour && !seen.includes(flavour)) seen.push(flavour);
  }
  throw new UsageError(
    `${what.source} "${choice}": no run image of builder ${what.builder} has the flavour "${choice}" (${
      seen.length ? `flavours: ${seen.join(', ')}` : 'its run images name no flavours'
    }); an image is named with a registry, a path or a tag (e.g. ${choice}:latest)`,
  );
}
