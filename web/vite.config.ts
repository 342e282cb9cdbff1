import { defineConfig } from "vite";

// The node serves web/dist at / (server/web.py). `npm run dev` proxies the API and the
// socket to a node on :8000, so the page and the API share an origin as in production.
export default defineConfig({
  build: {
    target: "es2022",
    sourcemap: true,
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: {
      "/v1": "http://127.0.0.1:8000",
      "/socket.io": { target: "http://127.0.0.1:8000", ws: true },
    },
  },
});
