// Touch-to-photon probe for benchmarks and browser tests (loaded by the player with ?probe=1).
// For every displayed frame (requestVideoFrameCallback) it reads the stamp and records when the
// frame is expected on screen; with the send time of each input it yields touch-to-photon.
import { StampReader } from "./stamp.js";

export function installProbe(video, state) {
  const reader = new StampReader();
  const probe = (window.cloudphoneProbe = {
    sent: {},          // seq -> performance.now() when the input message was sent
    firstSeen: {},     // seq -> {display, presentation, frame, rtp, processing, receive}
    frames: [],        // recent frames: {frame, seq, display, rtp}
    framesSeen: 0,
    unreadable: 0,
    timeOrigin: performance.timeOrigin,
  });
  state.onInputSent = (seq) => { probe.sent[seq] = performance.now(); };

  const onFrame = (now, meta) => {
    const stamp = reader.read(video);
    probe.framesSeen++;
    if (!stamp) {
      probe.unreadable++;
    } else {
      const entry = {
        frame: stamp.frame, seq: stamp.seq, display: meta.expectedDisplayTime,
        presentation: meta.presentationTime, rtp: meta.rtpTimestamp,
        processing: meta.processingDuration, receive: meta.receiveTime,
      };
      probe.frames.push(entry);
      if (probe.frames.length > 5000) probe.frames.splice(0, 1000);
      // Every input up to this frame's seq is now on screen, if it was not already.
      for (const key of Object.keys(probe.sent)) {
        const seq = Number(key);
        if (seq <= stamp.seq && !(seq in probe.firstSeen)) probe.firstSeen[seq] = entry;
      }
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  return probe;
}
