"""The two pages e-mailed links open: confirm an address, choose a new password.

A link's GET only shows a page; the action is a POST the page makes, so mail
scanners that prefetch links cannot spend them. The token travels in the link's
fragment (``#token=``), which browsers never send: it stays out of access logs,
proxies and Referer headers; the page reads it from there (or, for links
mailed before, from the query the server put in the page). No scripts or
styles from elsewhere, so the pages work offline and under a strict CSP.
"""

from __future__ import annotations

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Parley</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}
input,button{{font:inherit;padding:.5rem;margin:.25rem 0;width:100%;box-sizing:border-box}}
#result{{margin-top:1rem;font-weight:600}}</style></head>
<body><main><h1>{title}</h1>{body}<p id="result" role="status" aria-live="polite"></p></main>
<script>
const token = new URLSearchParams(location.hash.slice(1)).get("token") || {token};
history.replaceState(null, "", location.pathname);
async function post(path, body) {{
  const out = document.getElementById("result");
  try {{
    const r = await fetch(path, {{method: "POST", headers: {{"content-type": "application/json"}},
                                 body: JSON.stringify(body)}});
    const data = await r.json();
    out.textContent = r.ok ? {done} : (data.error && data.error.message) || "Something went wrong.";
  }} catch (e) {{ out.textContent = "Could not reach the server."; }}
}}
{script}
</script></body></html>"""


def _js_string(value: str | None) -> str:
    # JSON-ish escaping that is also safe inside a <script> element.
    if value is None:
        return '""'
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("<", "\\u003c")
    return f'"{escaped}"'


def verify_email_page(token: str | None) -> str:
    return _PAGE.format(
        title="Confirm your e-mail",
        token=_js_string(token),
        done='"Your address is confirmed. You can close this page."',
        body="<p>Confirm this address for your Parley account.</p>"
        '<button id="go" type="button">Confirm</button>',
        script='document.getElementById("go").onclick = () => '
        'post("/v1/auth/email/verify", {token});',
    )


def reset_password_page(token: str | None) -> str:
    return _PAGE.format(
        title="Choose a new password",
        token=_js_string(token),
        done='"Your password is changed; every device was signed out."',
        body='<form id="f"><label for="pw">New password (10 to 128 characters)</label>'
        '<input id="pw" type="password" autocomplete="new-password" minlength="10" '
        'maxlength="128" required><button type="submit">Set password</button></form>',
        script='document.getElementById("f").onsubmit = (e) => { e.preventDefault(); '
        'post("/v1/auth/email/password-reset/confirm", '
        '{token, password: document.getElementById("pw").value}); };',
    )
