"""The registry client: pull from and push to any OCI distribution registry.

Modules (imported on first use: httpx is not loaded for `hypr ps`):

- `config`     plain HTTP or TLS per host, mirrors, extra CAs (registries.json, environment)
- `auth`       the WWW-Authenticate challenge, bearer tokens, basic auth
- `transport`  HTTP to one endpoint: auth, retries, resumable (Range) downloads, errors
- `locks`      per-blob file locks so concurrent pulls download a blob once
- `pull`       reference -> verified blobs in the store -> an image record
- `push`       an image of the store -> a registry (HEAD skip, cross-repo mount, upload)
- `progress`   the events a pull or push streams
- `service`    what the engine exposes: pull, push, login, logout
"""
