import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The dev server forwards Threadline's routes, so the browser talks to one origin (no CORS set-up).
const threadline = process.env.THREADLINE_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      "/ai-sdk": threadline,
      "/chat": threadline,
      "/runs": threadline,
    },
  },
});
