"""Wire protocols: which API a request speaks, its error shapes, body fields and SSE framing."""
