using IotDsd.Contracts.Messages;
using IotDsd.Core.Models;
using IotDsd.Core.Sampling;
using IotDsd.Core.Speculative;

namespace IotDsd.Verifier.Baseline;

/// <summary>
/// One server-side generation: the target's sequence and the next token to feed. Tokens are chosen by
/// <see cref="Autoregressive.Choose"/>, as <see cref="Autoregressive.Generate"/> chooses them, so the streamed text is the
/// reference text.
/// </summary>
internal sealed class StreamSession(ILanguageModel target, string device, StreamRequest request, byte[]? correlation) : IDisposable
{
    private readonly IModelSequence _sequence = target.CreateSequence();
    private readonly float[] _logits = new float[target.VocabSize];
    private readonly float[] _probs = new float[target.VocabSize];
    private readonly SamplingParams _sampling = SamplingParams.From(request.Sampling);
    private readonly ulong _sessionKey = DeterministicRandom.SessionKey(request.SessionId);
    private int _generated;
    private int _last = -1;

    public string Device { get; } = device;
    public StreamRequest Request { get; } = request;
    public byte[]? Correlation { get; } = correlation;

    /// <summary>The next forward-pass share: the prompt on the first step, then the last token.</summary>
    public FeedRequest BeginFeed() =>
        new(_sequence, _last < 0 ? Request.Prompt : new[] { _last }, _logits);

    /// <summary>Chooses the next token from the logits the pass wrote.</summary>
    public (int Index, int Token, bool Done) Next()
    {
        var token = Autoregressive.Choose(_logits, _sampling, Request.Seed, _sessionKey, Request.Prompt.Length + _generated, _probs);
        var index = _generated++;
        _last = token;
        return (index, token, _generated >= Request.MaxTokens);
    }

    public void Dispose() => _sequence.Dispose();
}
