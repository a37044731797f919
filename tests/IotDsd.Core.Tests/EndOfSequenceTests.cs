using IotDsd.Contracts.Messages;
using IotDsd.Core.Sampling;
using IotDsd.Core.Sessions;
using IotDsd.Core.Speculative;
using IotDsd.Core.Tests.Infrastructure;

namespace IotDsd.Core.Tests;

/// <summary>End-of-sequence tokens: every mode stops where plain decoding stops, and the verifier ends the session.</summary>
public sealed class EndOfSequenceTests
{
    private static (int[] Tokens, DraftSession Device, VerifierSession Verifier, DraftRound Last) Drive(SessionSettings settings)
    {
        var device = new DraftSession(Lossless.Draft, settings, Lossless.Prompt);
        var verifier = new VerifierSession(Lossless.Target, device.OpenRequest(SessionDriver.DeviceId), SessionDriver.DeviceId);
        DraftRound? last = null;
        while (!device.IsComplete)
        {
            last = device.PrepareRound(settings.Gamma, 4);
            Assert.Equal(RoundStepKind.Committed, SessionDriver.VerifyAndApply(device, verifier, Lossless.Target, last, 4).Kind);
        }

        return (device.Committed.Skip(Lossless.Prompt.Length).Take(device.OutputLength).ToArray(), device, verifier, last!);
    }

    [Theory]
    [InlineData(DecodingMode.Greedy)]
    [InlineData(DecodingMode.Dsd)]
    [InlineData(DecodingMode.Dssd)]
    [InlineData(DecodingMode.Rsr)]
    public void Greedy_StopsWhereAutoregressiveStops_AndVerifierEndsTheSession(DecodingMode mode)
    {
        var free = Autoregressive.Generate(Lossless.Target, Lossless.Prompt, SamplingParams.Greedy, 1, "eos", 60);
        int stop = free[12]; // a token the text reaches mid-way
        var reference = Autoregressive.Generate(Lossless.Target, Lossless.Prompt, SamplingParams.Greedy, 1, "eos", 60, [stop]);
        Assert.True(reference.Length <= 13 && reference[^1] == stop);

        var settings = SessionDriver.Settings(0, mode, SamplingParams.Greedy, 60, 4) with { StopTokens = [stop] };
        var (tokens, device, verifier, last) = Drive(settings);
        using (device)
        using (verifier)
        {
            Assert.Equal(reference, tokens);
            Assert.Equal(StopReason.Eos, device.StopReason);
            Assert.True(device.IsComplete);
            Assert.Equal([stop], device.OpenRequest("d").StopTokens!);
            if (mode == DecodingMode.Greedy)
            {
                // The verdict that committed the stop token ended the session: a later round is refused, the same one answered again.
                Assert.NotNull(verifier.EndedAt);
                var next = verifier.Check(last with { Round = last.Round + 1 });
                Assert.Equal(RoundCheckKind.Error, next.Kind);
                Assert.Equal(ErrorCode.InvalidRequest, next.Code);
                Assert.Equal(RoundCheckKind.Reply, verifier.Check(last).Kind);
            }
        }
    }

    [Theory]
    [InlineData(DecodingMode.Dsd)]
    [InlineData(DecodingMode.Dssd)]
    [InlineData(DecodingMode.Rsr)]
    public void Sampling_TextWithStop_IsTextWithoutStopCutAtTheFirstStop(DecodingMode mode)
    {
        var sampling = new SamplingParams(0.9f, 0, 1f);
        for (int seed = 0; seed < 6; seed++)
        {
            var plain = SessionDriver.Settings(seed, mode, sampling, 80, 4);
            var (free, d1, v1, _) = Drive(plain);
            d1.Dispose();
            v1.Dispose();
            int stop = free[20];
            int first = Array.IndexOf(free, stop);
            var (stopped, d2, v2, _) = Drive(plain with { StopTokens = [stop] });
            using (d2)
            using (v2)
            {
                Assert.Equal(free[..(first + 1)], stopped);
                Assert.Equal(StopReason.Eos, d2.StopReason);
            }
        }
    }

    [Fact]
    public void NoStopTokens_RunsToMaxTokens()
    {
        var (tokens, device, verifier, _) = Drive(SessionDriver.Settings(1, DecodingMode.Rsr, new SamplingParams(0.9f, 0, 1f), 40, 4));
        using (device)
        using (verifier)
        {
            Assert.Equal(40, tokens.Length);
            Assert.Equal(StopReason.MaxTokens, device.StopReason);
            Assert.Null(verifier.EndedAt);
        }
    }
}
