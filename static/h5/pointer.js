// Pointer geometry and ids for the player: kept apart so that it can be reasoned about alone.

// Map client coordinates to 0..1 of the *picture* inside a <video> shown with
// `object-fit: contain`: the letterbox bars around it are not part of the phone's screen.
// Returns null for a point on a bar (or before the first frame has a size).
export function mapToVideo(video, clientX, clientY) {
  const rect = video.getBoundingClientRect();
  const vw = video.videoWidth, vh = video.videoHeight;
  if (!vw || !vh || !rect.width || !rect.height) return null;
  const scale = Math.min(rect.width / vw, rect.height / vh);
  const shownW = vw * scale, shownH = vh * scale;
  const left = rect.left + (rect.width - shownW) / 2;
  const top = rect.top + (rect.height - shownH) / 2;
  const x = (clientX - left) / shownW, y = (clientY - top) / shownH;
  if (x < 0 || x > 1 || y < 0 || y > 1) return null;
  return { x, y };
}

// Browsers number pointers with large, ever-growing ids; the phone wants 0..max-1, reused.
export class PointerIds {
  constructor(max) { this.max = max; this.map = new Map(); }
  acquire(pointerId) {
    if (this.map.has(pointerId)) return this.map.get(pointerId);
    const used = new Set(this.map.values());
    for (let id = 0; id < this.max; id++) {
      if (!used.has(id)) { this.map.set(pointerId, id); return id; }
    }
    return undefined; // more fingers than the phone supports
  }
  get(pointerId) { return this.map.get(pointerId); }
  release(pointerId) { this.map.delete(pointerId); }
}
