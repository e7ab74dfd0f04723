// What spills on a page (tests/browser/test_layout.py): the page wider than the window, or a
// visible element past its card's edge, unless a scroller (overflow-x auto, scroll, hidden)
// between them clips it: then that scroller itself is checked; a popover (position absolute
// or fixed) must fit the window instead. Returns one line per spill.
() => {
  const out = [];
  const root = document.documentElement, width = root.clientWidth;
  if (root.scrollWidth > width + 1) out.push(`page is ${root.scrollWidth}px wide in a ${width}px window`);
  const scrolls = (node) => ["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(node).overflowX);
  const name = (node) => {
    const id = node.id ? `#${node.id}` : "";
    const cls = typeof node.className === "string" && node.className ? `.${node.className.trim().split(/\s+/).join(".")}` : "";
    const text = (node.textContent || "").trim().slice(0, 40);
    return `${node.tagName.toLowerCase()}${id}${cls} "${text}"`;
  };
  // Shown: laid out and painted (a closed <details>' content is laid out but not shown).
  const shown = (node) => node.getClientRects().length > 0
    && (!node.checkVisibility || node.checkVisibility({ visibilityProperty: true }));
  for (const card of document.querySelectorAll(".card")) {
    if (!shown(card)) continue;
    const box = card.getBoundingClientRect();
    const told = new Set();  // one line per spill: its outermost element, not each child
    for (const node of card.querySelectorAll("*")) {
      if (!shown(node)) continue;
      let up = node.parentElement, clipped = false;
      while (up && up !== card) {
        if (scrolls(up) || told.has(up)) { clipped = true; break; }
        up = up.parentElement;
      }
      if (clipped) continue;
      const r = node.getBoundingClientRect();
      if (!r.width || !r.height) continue;
      // A popover (a menu under a button) floats over the page: it must fit the window.
      const floats = ["absolute", "fixed"].includes(getComputedStyle(node).position)
        && !node.closest(".js-plotly-plot");
      const [left, right] = floats ? [0, width] : [box.left, box.right];
      if (r.right > right + 1 || r.left < left - 1) {
        const cardName = card.id ? `#${card.id}` : (card.querySelector("h2, h3") || {}).textContent || "a card";
        told.add(node);
        out.push(`${name(node)} spills ${Math.round(Math.max(r.right - right, left - r.left))}px out of ${String(cardName).trim().slice(0, 40)}`);
      }
    }
  }
  return out;
}
