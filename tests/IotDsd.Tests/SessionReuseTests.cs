using IotDsd.Contracts.Messages;
using IotDsd.Contracts.Topics;
using IotDsd.Contracts.Wire;
using IotDsd.Core.Sessions;
using IotDsd.Messaging.Broker;
using IotDsd.Tests.Infrastructure;

namespace IotDsd.Tests;

/// <summary>
/// A session id used again: a second generation under the same id, or a device restarted without saved state whose
/// old session the verifier still holds. Each new generation starts at epoch 1, so the verifier must say which epoch
/// the id has reached, and late messages of the old generation must never pass as the new one's.
/// </summary>
public sealed class SessionReuseTests
{
    private const string Prompt = "The meaning of life is";
    private const string Device = "test-device";
    private const string VerifierId = "test-verifier";

    [Fact]
    public async Task ClosedSession_LateOpen_IsToldTheEpochAndBringsNothingBack_ThenTheIdIsReused()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var pipeline = await Pipeline.StartAsync(broker.Port);
        var first = await pipeline.GenerateAsync(Prompt, DecodingMode.Rsr, 1.2f, 40, seed: 3, session: "again");
        await WaitAsync(() => pipeline.Verifier.SessionCount == 0, "the close never reached the verifier");

        // A late copy of the first generation's open, as QoS 1 may deliver it after the close.
        await using var raw = await RawClient.ConnectAsync(broker.Port, "late-copies", TopicScheme.DeviceReplies(Device));
        using var old = new DraftSession(TestEnvironment.Draft, Pipeline.Settings("again", DecodingMode.Rsr, 1.2f, 40, 3), TestEnvironment.Tokenizer.Encode(Prompt));
        await raw.PublishAsync(TopicScheme.VerifierRounds(VerifierId, Device), WireCodec.Encode(old.OpenRequest(Device)), TopicScheme.DeviceReplies(Device), [9, 9, 9, 9, 9, 9, 9, 9]);
        var answer = WireCodec.Decode((await raw.WaitForAsync(m => m.Correlation is [9, ..])).Payload).Message;

        var superseded = Assert.IsType<ErrorReply>(answer);
        Assert.Equal(ErrorCode.EpochSuperseded, superseded.Code);
        Assert.Equal(1, superseded.Epoch);
        Assert.Equal("again", superseded.SessionId);
        Assert.Equal(0, pipeline.Verifier.SessionCount); // before: the late open recreated the session, and it lingered

        var second = await pipeline.GenerateAsync(Prompt, DecodingMode.Rsr, 1.2f, 40, seed: 3, session: "again");
        Assert.Equal(first.Tokens, second.Tokens);
        // The late copy, and the second generation's first open (again only if that open was resent).
        Assert.True(pipeline.Verifier.Errors[ErrorCode.EpochSuperseded] >= 2);
        Assert.Empty(pipeline.Log.Errors);
    }

    [Fact]
    public async Task RestartedDeviceWithoutSavedState_VerifierHoldsANewerEpoch_ReopensAboveItAtOnce()
    {
        await using var broker = await EmbeddedBroker.StartAsync();
        await using var pipeline = await Pipeline.StartAsync(broker.Port, device: o => o with { GiveUpAfter = TimeSpan.FromSeconds(20) });
        var reference = (await pipeline.GenerateAsync(Prompt, DecodingMode.Greedy, 0f, 30, session: "reference")).Tokens;

        // What a device killed after a few reopens leaves behind: its session held at epoch 5, never closed.
        await using var raw = await RawClient.ConnectAsync(broker.Port, "before-restart", TopicScheme.DeviceReplies(Device));
        using var killed = new DraftSession(TestEnvironment.Draft, Pipeline.Settings("kept", DecodingMode.Greedy, 0f, 30, 7), TestEnvironment.Tokenizer.Encode(Prompt));
        for (var i = 0; i < 4; i++)
        {
            killed.ResetVerifier();
        }

        Assert.Equal(5, killed.Epoch);
        await raw.PublishAsync(TopicScheme.VerifierRounds(VerifierId, Device), WireCodec.Encode(killed.OpenRequest(Device)), TopicScheme.DeviceReplies(Device), [5, 0, 0, 0, 0, 0, 0, 0]);
        Assert.IsType<SessionOpened>(WireCodec.Decode((await raw.WaitForAsync(m => m.Correlation is [5, ..])).Payload).Message);

        // The restarted device opens "kept" at epoch 1. Before, the verifier dropped that open without a word and the
        // device resent it until it gave up (here after 20 s); now it is told epoch 5 and reopens at 6.
        var report = await pipeline.GenerateAsync(Prompt, DecodingMode.Greedy, 0f, 30, session: "kept");
        Assert.Equal(reference, report.Tokens);
        Assert.True(pipeline.Verifier.Errors[ErrorCode.EpochSuperseded] >= 1);
        Assert.Empty(pipeline.Log.Errors);
    }

    private static async Task WaitAsync(Func<bool> condition, string why)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, why);
            await Task.Delay(10);
        }
    }
}
