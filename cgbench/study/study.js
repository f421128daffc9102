// The study page: one participant's session, trial by trial, against the JSON API of server.py.
// States (body[data-state]): intro, loading, trial, feedback (practice only), break, done, error.
// The participant id stays in localStorage, so a reload continues at the first unanswered trial.
"use strict";

const KEY = "cgbench-study-participant";
const $ = (id) => document.getElementById(id);
const SECTION = {intro: "intro", loading: "trial", trial: "trial", feedback: "trial", break: "break", done: "done",
                 error: "error"};
let participant = localStorage.getItem(KEY);
let current = null;  // the trial on screen
let upcoming = null;  // the trial shown after the practice feedback or the break
let breakShown = false;
let busy = false;  // an answer is on its way

function setState(state) {
  document.body.dataset.state = state;
  for (const id of ["intro", "trial", "break", "done", "error"]) $(id).hidden = SECTION[state] !== id;
}

function setProgress(text, done) {
  $("progress").textContent = text;
  $("bar").hidden = text === "";
  $("bar").value = done;
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method, cache: "no-store",
    headers: body === undefined ? {} : {"Content-Type": "application/json"},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error || "the server answered " + response.status);
    error.status = response.status;
    throw error;
  }
  return data;
}

function loadImage(img, src) {
  return new Promise((resolve, reject) => {
    img.onload = resolve;
    img.onerror = () => reject(new Error("an image did not load"));
    img.src = src;
  });
}

async function show(trial) {
  if (trial.phase === "done") {
    current = null;
    setProgress("Session complete", 50);
    setState("done");
    return;
  }
  if (trial.phase === "scored" && trial.index === 1 && !breakShown) {
    upcoming = trial;
    setProgress("Practice done", 10);
    setState("break");
    return;
  }
  current = trial;
  setState("loading");
  $("feedback").hidden = true;
  $("next").hidden = true;
  $("left").classList.remove("real");
  $("right").classList.remove("real");
  await Promise.all([loadImage($("left-img"), trial.left), loadImage($("right-img"), trial.right)]);
  const practice = trial.phase === "practice";
  setProgress((practice ? "Practice " : "Trial ") + trial.index + "/" + trial.of, (practice ? 0 : 10) + trial.index - 1);
  setState("trial");
}

function fail(error) {
  $("error-text").textContent = "Something went wrong (" + error.message + "). Your answers so far are saved.";
  setState("error");
}

async function resume() {
  if (!participant) {
    setProgress("", 0);
    setState("intro");
    return;
  }
  try {
    await show(await api("GET", "/api/participants/" + participant + "/trial"));
  } catch (error) {
    if (error.status === 404) forget();
    else fail(error);
  }
}

function forget() {
  localStorage.removeItem(KEY);
  participant = null;
  current = upcoming = null;
  breakShown = false;
  setProgress("", 0);
  setState("intro");
}

async function start() {
  setState("loading");
  try {
    const data = await api("POST", "/api/participants", {});
    participant = data.participant;
    localStorage.setItem(KEY, participant);
    await show(data.trial);
  } catch (error) {
    fail(error);
  }
}

async function answer(side) {
  if (document.body.dataset.state !== "trial" || busy) return;
  busy = true;
  try {
    const data = await api("POST", "/api/participants/" + participant + "/trials/" + current.trial, {choice: side});
    if (data.feedback) giveFeedback(data.feedback, data.next);
    else await show(data.next);
  } catch (error) {
    if (error.status === 409) await resume();  // answered elsewhere (another tab): go to the current trial
    else fail(error);
  } finally {
    busy = false;
  }
}

function giveFeedback(feedback, next) {
  upcoming = next;
  $("feedback").textContent = (feedback.correct ? "Right: " : "Not this time: ") + "the " + feedback.real
    + " image is the real one.";
  $("feedback").className = feedback.correct ? "right" : "wrong";
  $("feedback").hidden = false;
  $(feedback.real).classList.add("real");
  $("next").hidden = false;
  setState("feedback");
}

function proceed() {  // after the feedback or the break
  breakShown = breakShown || document.body.dataset.state === "break";
  show(upcoming).catch(fail);
}

$("start").addEventListener("click", () => { if (document.body.dataset.state === "intro") start(); });
$("left").addEventListener("click", () => answer("left"));
$("right").addEventListener("click", () => answer("right"));
$("next").addEventListener("click", proceed);
$("begin").addEventListener("click", proceed);
$("retry").addEventListener("click", resume);
$("another").addEventListener("click", forget);

document.addEventListener("keydown", (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey || event.repeat) return;
  const state = document.body.dataset.state;
  let action = null;
  if (state === "trial" && (event.key === "ArrowLeft" || event.key === "1")) action = () => answer("left");
  else if (state === "trial" && (event.key === "ArrowRight" || event.key === "2")) action = () => answer("right");
  else if (event.key === "Enter" || event.key === " ") {  // never "clicks" a focused image
    action = {intro: start, feedback: proceed, break: proceed, error: resume}[state] || (() => {});
  }
  if (action === null) return;
  event.preventDefault();
  action();
});

resume();
