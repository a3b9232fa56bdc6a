// Continue's OpenAI adapter (@continuedev/openai-adapters) as Continue's autocomplete uses it:
// fimStream (POST {apiBase}fim/completions, streamed) and completionNonStream (POST
// {apiBase}completions). Prints what each gave back as one JSON object, or the error.
//
// usage: node client.mjs API_BASE API_KEY MODEL REQUEST_JSON
import { constructLlmApi } from "@continuedev/openai-adapters";

const [apiBase, apiKey, model, requestJson] = process.argv.slice(2);
const request = JSON.parse(requestJson);
const api = constructLlmApi({ provider: "openai", apiBase, apiKey });
const signal = new AbortController().signal;
const out = {};
try {
  const chunks = [];
  for await (const chunk of api.fimStream(
    { model, prompt: request.prefix, suffix: request.suffix, max_tokens: request.max_tokens,
      temperature: 0, stop: request.stop, stream: true },
    signal,
  )) {
    chunks.push(chunk);
  }
  out.fim = { chunks, text: chunks.map((c) => c.choices[0].delta.content ?? "").join("") };
  const completion = await api.completionNonStream(
    { model, prompt: request.prefix, suffix: request.suffix, max_tokens: request.max_tokens,
      temperature: 0, stop: request.stop, stream: false },
    signal,
  );
  out.completion = { text: completion.choices[0].text, finish_reason: completion.choices[0].finish_reason };
} catch (error) {
  out.error = String(error && error.message ? error.message : error);
}
console.log(JSON.stringify(out));
