/**
 * The OpenAI request rules, once: these zod schemas validate every request at the front door and
 * again on the host that runs it, and their inferred types are what the backends receive. Objects
 * are loose: fields this node does not know are kept, so a pass-through backend gets the request
 * as the client sent it. Error messages name the field and the expected kind, never the value.
 */
import { z } from 'zod';

/** OpenAI's own limits, where it documents them. */
export const LIMITS = {
  stop: 4,
  n: 128,
  tools: 128,
  functionName: /^[a-zA-Z0-9_-]{1,64}$/,
  embeddingInputs: 2048,
  topLogprobs: 20,
} as const;

const nullish = <T extends z.ZodType>(schema: T) => schema.nullish();
const text = z.string();
const nonEmpty = z.string().min(1, { error: 'must not be empty' });
const jsonObject = z.record(z.string(), z.unknown());

// ---------------------------------------------------------------- chat completions

export const TextPart = z.looseObject({ type: z.literal('text'), text });
const ImagePart = z.looseObject({
  type: z.literal('image_url'),
  image_url: z.looseObject({ url: nonEmpty, detail: z.string().optional() }),
});
const RefusalPart = z.looseObject({ type: z.literal('refusal'), refusal: text });
/** A user content part: text and images checked, other kinds (input_audio, file, …) passed on. */
const UserPart = z
  .looseObject({
    type: nonEmpty,
    text: text.optional(),
    image_url: ImagePart.shape.image_url.optional(),
  })
  .superRefine((part, ctx) => {
    const needs = part.type === 'text' ? 'text' : part.type === 'image_url' ? 'image_url' : undefined;
    if (needs && part[needs] === undefined) {
      ctx.addIssue({ code: 'custom', path: [needs], message: `a '${part.type}' part needs '${needs}'` });
    }
  });
const partsOf = <T extends z.ZodType>(part: T) =>
  z.array(part).min(1, { error: 'must not be an empty array' });
const TextContent = z.union([text, partsOf(TextPart)], {
  error: 'expected a string or an array of text parts',
});

export const ToolCall = z.looseObject({
  id: nonEmpty,
  type: z.literal('function'),
  function: z.looseObject({ name: nonEmpty, arguments: text }),
});

const SystemMessage = z.looseObject({
  role: z.enum(['system', 'developer']),
  content: TextContent,
  name: text.optional(),
});
const UserMessage = z.looseObject({
  role: z.literal('user'),
  content: z.union([text, partsOf(UserPart)], { error: 'expected a string or an array of content parts' }),
  name: text.optional(),
});
const AssistantMessage = z
  .looseObject({
    role: z.literal('assistant'),
    content: nullish(z.union([text, partsOf(z.union([TextPart, RefusalPart]))])),
    refusal: nullish(text),
    name: text.optional(),
    tool_calls: z.array(ToolCall).optional(),
    function_call: nullish(z.looseObject({ name: nonEmpty, arguments: text })),
  })
  .refine((m) => m.content != null || (m.tool_calls?.length ?? 0) > 0 || m.function_call != null, {
    error: 'an assistant message needs content or tool_calls',
    path: ['content'],
  });
const ToolMessage = z.looseObject({ role: z.literal('tool'), content: TextContent, tool_call_id: nonEmpty });
const FunctionMessage = z.looseObject({
  role: z.literal('function'),
  name: nonEmpty,
  content: nullish(text),
});

export const ChatMessage = z.discriminatedUnion('role', [
  SystemMessage,
  UserMessage,
  AssistantMessage,
  ToolMessage,
  FunctionMessage,
]);

export const FunctionDefinition = z.looseObject({
  name: z.string().regex(LIMITS.functionName, { error: 'must be 1 to 64 of a-z, A-Z, 0-9, _ and -' }),
  description: text.optional(),
  parameters: jsonObject.optional(),
  strict: nullish(z.boolean()),
});
export const ChatTool = z.looseObject({ type: z.literal('function'), function: FunctionDefinition });

export const ChatToolChoice = z.union(
  [
    z.enum(['none', 'auto', 'required']),
    z.looseObject({ type: z.literal('function'), function: z.looseObject({ name: nonEmpty }) }),
  ],
  { error: "expected 'none', 'auto', 'required' or {type:'function',function:{name}}" },
);

export const JsonSchemaFormat = z.looseObject({
  name: z.string().regex(LIMITS.functionName, { error: 'must be 1 to 64 of a-z, A-Z, 0-9, _ and -' }),
  description: text.optional(),
  schema: jsonObject.optional(),
  strict: nullish(z.boolean()),
});

export const ResponseFormat = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('text') }),
  z.looseObject({ type: z.literal('json_object') }),
  z.looseObject({ type: z.literal('json_schema'), json_schema: JsonSchemaFormat }),
]);

const Stop = nullish(
  z.union([text, z.array(text).max(LIMITS.stop)], {
    error: `expected a string or an array of at most ${LIMITS.stop} strings`,
  }),
);

/** Sampling fields shared by chat and text completions. */
const samplingFields = {
  model: nonEmpty,
  stream: nullish(z.boolean()),
  stream_options: nullish(z.looseObject({ include_usage: z.boolean().optional() })),
  max_tokens: nullish(z.int().min(1)),
  temperature: nullish(z.number().min(0).max(2)),
  top_p: nullish(z.number().min(0).max(1)),
  n: nullish(z.int().min(1).max(LIMITS.n)),
  stop: Stop,
  presence_penalty: nullish(z.number().min(-2).max(2)),
  frequency_penalty: nullish(z.number().min(-2).max(2)),
  logit_bias: nullish(z.record(z.string(), z.number().min(-100).max(100))),
  seed: nullish(z.int()),
  user: text.optional(),
};

export const ChatCompletionRequest = z.looseObject({
  ...samplingFields,
  messages: z.array(ChatMessage).min(1, { error: 'must not be empty' }),
  max_completion_tokens: nullish(z.int().min(1)),
  logprobs: nullish(z.boolean()),
  top_logprobs: nullish(z.int().min(0).max(LIMITS.topLogprobs)),
  response_format: ResponseFormat.optional(),
  tools: z.array(ChatTool).max(LIMITS.tools).optional(),
  tool_choice: ChatToolChoice.optional(),
  parallel_tool_calls: nullish(z.boolean()),
});

// ---------------------------------------------------------------- completions & embeddings

const TokenIds = z.array(z.int().min(0)).min(1, { error: 'must not be empty' });
const TextOrTokens = z.union([nonEmpty, z.array(text).min(1), TokenIds, z.array(TokenIds).min(1)], {
  error: 'expected a string, an array of strings, or an array of token ids',
});

export const CompletionRequest = z.looseObject({
  ...samplingFields,
  prompt: TextOrTokens,
  echo: nullish(z.boolean()),
  suffix: nullish(text),
  best_of: nullish(z.int().min(1).max(20)),
  logprobs: nullish(z.int().min(0).max(5)),
});

export const EmbeddingsRequest = z.looseObject({
  model: nonEmpty,
  input: TextOrTokens,
  encoding_format: z.enum(['float', 'base64']).optional(),
  dimensions: z.int().min(1).optional(),
  user: text.optional(),
});

// ---------------------------------------------------------------- responses

const ResponsesPart = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('input_text'), text }),
  z.looseObject({ type: z.literal('output_text'), text, annotations: z.array(z.unknown()).optional() }),
  z.looseObject({ type: z.literal('refusal'), refusal: text }),
  // Only inline or remote URLs: uploaded file ids do not exist in a mesh.
  z.looseObject({
    type: z.literal('input_image'),
    image_url: nonEmpty,
    detail: z.enum(['low', 'high', 'auto']).optional(),
  }),
]);

const ResponsesMessage = z.looseObject({
  type: z.literal('message'),
  role: z.enum(['user', 'system', 'developer', 'assistant']),
  content: z.union([text, partsOf(ResponsesPart)], {
    error: 'expected a string or an array of content parts',
  }),
  id: text.optional(),
  status: text.optional(),
});
const FunctionCallItem = z.looseObject({
  type: z.literal('function_call'),
  call_id: nonEmpty,
  name: nonEmpty,
  arguments: text,
  id: text.optional(),
  status: text.optional(),
});
const FunctionCallOutputItem = z.looseObject({
  type: z.literal('function_call_output'),
  call_id: nonEmpty,
  output: z.union([text, partsOf(ResponsesPart)], {
    error: 'expected a string or an array of content parts',
  }),
  id: nullish(text),
  status: nullish(text),
});

/** A message item may omit `type`; the other kinds are refused by name. */
const ResponsesItem = z.preprocess(
  (item) =>
    typeof item === 'object' && item !== null && !Array.isArray(item) && !('type' in item)
      ? { ...item, type: 'message' }
      : item,
  z.discriminatedUnion('type', [ResponsesMessage, FunctionCallItem, FunctionCallOutputItem], {
    error: "expected an item of type 'message', 'function_call' or 'function_call_output'",
  }),
);

export const ResponsesFunctionTool = z.looseObject({
  type: z.literal('function', { error: "only tools of type 'function' are supported" }),
  name: FunctionDefinition.shape.name,
  description: nullish(text),
  parameters: nullish(jsonObject),
  strict: nullish(z.boolean()),
});

const ResponsesTextFormat = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('text') }),
  z.looseObject({ type: z.literal('json_object') }),
  z.looseObject({ type: z.literal('json_schema'), ...JsonSchemaFormat.shape, schema: jsonObject }),
]);

/** Features that need server-side state this mesh does not keep. */
const stateful = z.custom<never>((value) => value === undefined || value === null || value === false, {
  error: 'needs server-side state, which this mesh does not keep',
  params: { unsupported: true },
});

export const ResponsesRequest = z.looseObject({
  model: nonEmpty,
  input: z.union([text, z.array(ResponsesItem).min(1, { error: 'must not be empty' })], {
    error: 'expected a string or an array of input items',
  }),
  instructions: nullish(text),
  max_output_tokens: nullish(z.int().min(1)),
  temperature: nullish(z.number().min(0).max(2)),
  top_p: nullish(z.number().min(0).max(1)),
  stream: nullish(z.boolean()),
  user: text.optional(),
  metadata: nullish(z.record(z.string(), text)),
  text: nullish(z.looseObject({ format: nullish(ResponsesTextFormat) })),
  tools: z.array(ResponsesFunctionTool).max(LIMITS.tools).optional(),
  tool_choice: z
    .union(
      [z.enum(['none', 'auto', 'required']), z.looseObject({ type: z.literal('function'), name: nonEmpty })],
      { error: "expected 'none', 'auto', 'required' or {type:'function',name}" },
    )
    .optional(),
  parallel_tool_calls: nullish(z.boolean()),
  previous_response_id: stateful.optional(),
  conversation: stateful.optional(),
  prompt: stateful.optional(),
  background: stateful.optional(),
});

export type ChatMessage = z.infer<typeof ChatMessage>;
export type ChatTool = z.infer<typeof ChatTool>;
export type ChatToolChoice = z.infer<typeof ChatToolChoice>;
export type ToolCall = z.infer<typeof ToolCall>;
export type ResponseFormat = z.infer<typeof ResponseFormat>;
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequest>;
export type CompletionRequest = z.infer<typeof CompletionRequest>;
export type EmbeddingsRequest = z.infer<typeof EmbeddingsRequest>;
export type ResponsesRequest = z.infer<typeof ResponsesRequest>;
export type ResponsesItem = z.infer<typeof ResponsesItem>;
export type ResponsesFunctionTool = z.infer<typeof ResponsesFunctionTool>;
