// The token: taken from the address's fragment (#token=…), kept in sessionStorage only.

const STORAGE_KEY = "ipcbus.token";

/** The token from the fragment (removed from the address bar), else from this tab's storage. */
export function takeToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const given = fragment.get("token");
  if (given !== null) {
    sessionStorage.setItem(STORAGE_KEY, given);
    // Out of the address bar and the history, so it is not shared by a copied link.
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(STORAGE_KEY);
}

export function forgetToken() {
  sessionStorage.removeItem(STORAGE_KEY);
}

/**
 * Asks the HTTP API whether the server takes `token`: "ok", "refused" (401),
 * or "unreachable". A browser does not say why a WebSocket failed; HTTP does.
 */
export async function checkToken(token) {
  try {
    const res = await fetch("/v1/keys?pattern=ipcbus.ui.none", { headers: { Authorization: `Bearer ${token}` } });
    if (res.status === 401) return "refused";
    return res.ok ? "ok" : "unreachable";
  } catch {
    return "unreachable";
  }
}

/** Shows the login box with `why`; resolves to the token the user enters. */
export function askToken(why) {
  const box = document.getElementById("login");
  const form = document.getElementById("login-form");
  const input = document.getElementById("login-token");
  document.getElementById("login-why").textContent = why;
  document.getElementById("main").hidden = true;
  box.hidden = false;
  input.focus();
  return new Promise((resolve) => {
    form.addEventListener("submit", function submit(e) {
      e.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      form.removeEventListener("submit", submit);
      sessionStorage.setItem(STORAGE_KEY, token);
      input.value = "";
      box.hidden = true;
      resolve(token);
    });
  });
}
