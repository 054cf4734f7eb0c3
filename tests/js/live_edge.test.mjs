// Live view stays live: the play position follows the live edge after a stall.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  followLiveEdge, LIVE_CATCH_UP_RATE, LIVE_JUMP_BEHIND_SEC,
} from "../../src/moonfire/web/static/js/live.js";

const video = (currentTime, playbackRate = 1) => ({ currentTime, playbackRate });

test("a few frames behind the edge plays at normal speed", () => {
  const v = video(10.0);
  followLiveEdge(v, 10.2);
  assert.deepEqual(v, video(10.0, 1));
});

test("a stall's delay is played away fast, then normal speed resumes", () => {
  const v = video(10.0);
  followLiveEdge(v, 11.5);
  assert.equal(v.playbackRate, LIVE_CATCH_UP_RATE);
  assert.equal(v.currentTime, 10.0, "catching up does not skip video");
  followLiveEdge(v, 10.8); // between the two thresholds: keeps catching up
  assert.equal(v.playbackRate, LIVE_CATCH_UP_RATE);
  followLiveEdge(v, 10.3);
  assert.equal(v.playbackRate, 1);
});

test("far behind (a hidden tab) jumps to just before the edge", () => {
  const v = video(10.0, LIVE_CATCH_UP_RATE);
  followLiveEdge(v, 10.0 + LIVE_JUMP_BEHIND_SEC + 2);
  assert.equal(v.currentTime, 14.5);
  assert.equal(v.playbackRate, 1);
});
