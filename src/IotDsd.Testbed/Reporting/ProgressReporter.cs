using System.Globalization;

namespace IotDsd.Testbed.Reporting;

/// <summary>
/// Progress of a long command on stderr, shared by every such command (model builds, distillation, benches, soaks):
/// what it is doing, how far it is, and an estimate of the time left. A phase is announced at once; counted progress
/// is printed at most once per <see cref="Interval"/> (whole lines, so logs and pipes read it too) and when the phase
/// ends. stdout stays the command's result.
/// </summary>
internal sealed class ProgressReporter
{
    private readonly string _command;
    private readonly TextWriter _writer;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private readonly long _created;
    private string? _phase;
    private string _unit = "";
    private long _total;
    private long _done;
    private long _phaseStarted;
    private long _lastPrinted;

    public ProgressReporter(string command, TextWriter? writer = null, TimeProvider? time = null, TimeSpan? interval = null)
    {
        _command = command;
        _writer = writer ?? Console.Error;
        _time = time ?? TimeProvider.System;
        Interval = interval ?? TimeSpan.FromSeconds(5);
        _created = _time.GetTimestamp();
    }

    /// <summary>Shortest gap between two counted lines of one phase.</summary>
    public TimeSpan Interval { get; }

    /// <summary>Begins a counted phase: <paramref name="total"/> <paramref name="unit"/> to do.</summary>
    public void Start(string phase, long total, string unit)
    {
        lock (_lock)
        {
            _phase = phase;
            _total = Math.Max(0, total);
            _unit = unit;
            _done = 0;
            _phaseStarted = _lastPrinted = _time.GetTimestamp();
            Write($"{phase}: {Count(0)}");
        }
    }

    /// <summary>A phase without a count (a single step whose length is not known in advance).</summary>
    public void Step(string phase)
    {
        lock (_lock)
        {
            _phase = null;
            Write($"{phase} ...");
        }
    }

    /// <summary>Sets the amount done in the current counted phase; prints when <see cref="Interval"/> has passed.</summary>
    public void Report(long done)
    {
        lock (_lock)
        {
            ReportLocked(done);
        }
    }

    /// <summary>Adds to the amount done (for callers that count increments).</summary>
    public void Advance(long by = 1)
    {
        lock (_lock)
        {
            ReportLocked(_done + by);
        }
    }

    private void ReportLocked(long done)
    {
        if (_phase is null)
        {
            return;
        }

        _done = _total > 0 ? Math.Clamp(done, 0, _total) : Math.Max(0, done);
        var now = _time.GetTimestamp();
        if (_time.GetElapsedTime(_lastPrinted, now) >= Interval && (_total == 0 || _done < _total))
        {
            _lastPrinted = now;
            var elapsed = _time.GetElapsedTime(_phaseStarted, now);
            Write($"{_phase}: {Count(_done)}, {Duration(elapsed)} elapsed{Left(elapsed)}");
        }
    }

    /// <summary>Ends the current counted phase with its time.</summary>
    public void Done()
    {
        lock (_lock)
        {
            if (_phase is null)
            {
                return;
            }

            var elapsed = _time.GetElapsedTime(_phaseStarted);
            Write($"{_phase}: {Count(_done)}, done in {Duration(elapsed)}");
            _phase = null;
        }
    }

    /// <summary>Time since the reporter was made (the whole command).</summary>
    public TimeSpan Elapsed => _time.GetElapsedTime(_created);

    /// <summary>The estimated time left: the phase's mean rate so far applied to what remains.</summary>
    private string Left(TimeSpan elapsed)
    {
        if (_done <= 0 || _total <= 0)
        {
            return "";
        }

        var left = TimeSpan.FromTicks((long)(elapsed.Ticks * (double)(_total - _done) / _done));
        return $", about {Duration(left)} left";
    }

    private string Count(long done) => _total > 0
        ? string.Create(CultureInfo.InvariantCulture, $"{done}/{_total} {_unit} ({100.0 * done / _total:0}%)")
        : string.Create(CultureInfo.InvariantCulture, $"{done} {_unit}");

    /// <summary>"12 s", "3 min 05 s", "1 h 02 min".</summary>
    public static string Duration(TimeSpan t)
    {
        if (t < TimeSpan.FromMinutes(1))
        {
            return string.Create(CultureInfo.InvariantCulture, $"{Math.Max(0, (int)Math.Round(t.TotalSeconds))} s");
        }

        return t < TimeSpan.FromHours(1)
            ? string.Create(CultureInfo.InvariantCulture, $"{(int)t.TotalMinutes} min {t.Seconds:00} s")
            : string.Create(CultureInfo.InvariantCulture, $"{(int)t.TotalHours} h {t.Minutes:00} min");
    }

    private void Write(string line)
    {
        _writer.WriteLine($"{_command}: {line}");
        _writer.Flush();
    }
}
