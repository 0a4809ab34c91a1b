// Who is logged in, in which account and project, and what they may do.

import { gql, setAccount, currentAccount } from "./api.js";

const PROJECT_KEY = "kiln.project";

export const state = {
  viewer: null, // { user, account, role, permissions, accounts }
  projects: [],
  project: null, // { id, name }
  listeners: new Set(),
};

const VIEWER = `query Viewer {
  viewer { user { id email name } account { id name } role permissions
           accounts { account { id name } role } }
}`;
const PROJECTS = `query Projects { projects(first: 200) { edges { node { id databaseId name } } } }`;

export function can(permission) {
  return !!state.viewer && state.viewer.permissions.includes(permission);
}

export function onChange(fn) {
  state.listeners.add(fn);
  return () => state.listeners.delete(fn);
}

function changed(what) {
  for (const fn of state.listeners) fn(what);
}

/** Load the viewer (null when nobody is logged in) and the account's projects. */
export async function loadSession() {
  let viewer;
  try {
    viewer = (await gql(VIEWER)).viewer;
  } catch (err) {
    if (err.code === "UNAUTHENTICATED") { state.viewer = null; return null; }
    throw err;
  }
  const ids = viewer.accounts.map((a) => a.account.id);
  if (!ids.includes(currentAccount())) {
    const pick = viewer.account?.id || ids[0] || null;
    setAccount(pick);
    if (pick && viewer.account?.id !== pick) viewer = (await gql(VIEWER)).viewer;
  }
  state.viewer = viewer;
  await loadProjects();
  return viewer;
}

async function loadProjects() {
  if (!state.viewer || !state.viewer.account) { state.projects = []; state.project = null; return; }
  const data = await gql(PROJECTS);
  state.projects = data.projects.edges.map((e) => e.node);
  const saved = localStorage.getItem(`${PROJECT_KEY}.${state.viewer.account.id}`);
  state.project = state.projects.find((p) => p.id === saved) || state.projects[0] || null;
}

export async function switchAccount(id) {
  setAccount(id);
  await loadSession();
  changed("account");
}

export function switchProject(id) {
  state.project = state.projects.find((p) => p.id === id) || null;
  if (state.project && state.viewer?.account) {
    localStorage.setItem(`${PROJECT_KEY}.${state.viewer.account.id}`, state.project.id);
  }
  changed("project");
}

export function loggedOut() {
  state.viewer = null;
  state.projects = [];
  state.project = null;
}
