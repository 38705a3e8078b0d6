"""The Studio: a web page served by the API at `/` for people who would rather click than curl.

`mount_studio(app)` (in `mount.py`) adds the page and its two assets (`/studio/app.js`,
`/studio/styles.css`). The page is plain HTML/CSS/JS shipped as package data: no build step, no
CDN, no web font, and a Content-Security-Policy that keeps it on its own server.

It uses only the public v2 API, authenticated with the `x-api-key` the user pastes (kept in
`sessionStorage`, so it dies with the tab). The flow for local files:

1. A file is uploaded to the library as soon as it is picked: `POST /v2/assets/upload`, then a
   `PUT` of the bytes to the returned `uploadUrl` (with upload progress), then `POST /v2/assets`.
   A file the server cannot read is refused here, before anything is priced or queued.
2. The price is asked for with the asset ids: `POST /v2/analyze/cost` with the exact body that
   will be submitted, re-asked whenever the model or an option changes. Pricing after upload is
   what makes the estimate exact (the server probes the real durations) and sends no file twice.
3. Start sends `POST /v2/generate` as JSON referencing the asset ids; each job is then polled with
   `GET /v2/generate/{id}?include=progress` until it is COMPLETED, FAILED or REJECTED.

A server without the asset upload routes (404/405) gets one multipart `POST /v2/generate` with the
files instead (parts `model`, `video`|`image`, `audio`, `input`, `options` as a JSON string), and
the page says it cannot price the job beforehand.
"""
