// Talking to Threadline: JSON requests with the bearer token, problem+json errors as ApiError.

export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code ?? null;
    this.retryAfter = retryAfter;
  }

  // What a person should read: the server's own words, with the next step where there is one.
  get advice() {
    if (this.status === 401) return "Your token was refused. Sign in again with a fresh token.";
    if (this.status === 429) {
      const wait = this.retryAfter ? ` Try again in ${this.retryAfter} s.` : "";
      return `${this.message}${wait}`;
    }
    if (this.status === 0) return "Threadline cannot be reached. Is the server running?";
    return this.message;
  }
}

export class Api {
  constructor({ token, onUnauthorized }) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.token}`, ...extra };
  }

  async fetch(path, { method = "GET", body, signal, headers } = {}) {
    let response;
    try {
      response = await fetch(path, {
        method,
        signal,
        headers: this.headers(body === undefined ? headers : { "Content-Type": "application/json", ...headers }),
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, { detail: error.message });
    }
    if (response.ok) return response;
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      problem = { detail: response.statusText };
    }
    const failure = new ApiError(response.status, problem, response.headers.get("Retry-After"));
    if (response.status === 401) this.onUnauthorized?.(failure);
    throw failure;
  }

  async json(path, options) {
    const response = await this.fetch(path, options);
    return response.status === 204 ? null : response.json();
  }

  // Like json(), but a route this server does not have yet answers `missing` instead of throwing.
  async optional(path, missing, options) {
    try {
      return await this.json(path, options);
    } catch (error) {
      if (error instanceof ApiError && (error.status === 404 || error.status === 405)) return missing;
      throw error;
    }
  }
}

// The `sub` of a JWT, to greet the user; the server is what checks the token.
export function tokenSubject(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub ?? null;
  } catch {
    return null;
  }
}
