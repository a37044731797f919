using IotDsd.Sim.Scenarios;

namespace IotDsd.Sim.Reproductions;

/// <summary>
/// The deployment the reproductions assume unless a calibration or scenario replaces it: a Raspberry-Pi-class device
/// drafting a ~100M-parameter model (10 ms a token), a GPU verifier running a 7B-class target (20 ms a pass plus 1 ms
/// per token in the batch), V = 32,000, γ = 4, acceptance 0.8 per position falling slowly.
/// </summary>
public static class Baseline
{
    public static Scenario Scenario { get; } = new()
    {
        Mode = SimMode.Rsr,
        Gamma = 4,
        Vocab = 32_000,
        TokensPerRequest = 256,
        RequestsPerDevice = 4,
        Device = new DeviceProfile { DraftMsPerToken = 10 },
        Verifier = new VerifierProfile { FixedMs = 20, PerSequenceMs = 0.5, PerTokenMs = 1, CloudDraftMsPerToken = 2, MaxBatch = 32, BatchWaitMs = 1 },
        Acceptance = new AcceptanceProfile { ByPosition = [0.85, 0.8, 0.78, 0.75, 0.72, 0.7, 0.7, 0.7] },
    };
}
