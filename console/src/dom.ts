/**
 * DOM building for the console. Every string from the network goes in as a text node or an
 * attribute value, never through an HTML parser: a peer named `<img onerror=…>` shows as text.
 */
type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Record<string, string | undefined> | null = null,
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {}))
    if (value !== undefined) el.setAttribute(name, value);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function s(
  tag: string,
  attrs: Record<string, string | number | undefined> = {},
  ...children: Child[]
): SVGElement {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs))
    if (value !== undefined) el.setAttribute(name, String(value));
  append(el, children);
  return el;
}

function append(parent: Element, children: (Child | Child[])[]): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
}

/** Replaces a container's content (keeps the container, so its place and listeners stay). */
export function fill(container: Element, ...children: (Child | Child[])[]): void {
  container.replaceChildren();
  append(container, children);
}
