"""Serves the pushed model versions over TF Serving's REST API, with a page to try the model.

Matched to TF Serving's source, so a client written against TF Serving, or KServe's TensorFlow
runtime, works unchanged. One job per module:

- `errors`: TF Serving's error codes and HTTP statuses;
- `models`: the version policy (which pushed version serves, loading new ones in the background);
- `batching`: concurrent predict calls as one model call;
- `codec`: JSON <-> tensors, as json_tensor.cc;
- `routes`: the REST API, and the one place an error becomes an answer;
- `app`: the aiohttp application, its `ServerSettings`, and a server in a thread.
"""
