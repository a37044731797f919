using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace IotDsd.Inference.Transformer;

/// <summary>
/// 64-byte aligned, zeroed native memory that ONNX Runtime tensors can be laid over without copying or pinning.
/// Freed on dispose (or by the finalizer); tensors made by <see cref="Tensor"/> must be disposed first.
/// </summary>
internal sealed unsafe class NativeBuffer<T> : IDisposable
    where T : unmanaged
{
    private T* _pointer;

    public NativeBuffer(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        Length = length;
        var bytes = (nuint)(length * sizeof(T));
        _pointer = (T*)NativeMemory.AlignedAlloc(bytes, 64);
        NativeMemory.Clear(_pointer, bytes);
        GC.AddMemoryPressure((long)bytes);
    }

    ~NativeBuffer() => Free();

    public long Length { get; }

    public T* Pointer => _pointer != null ? _pointer : throw new ObjectDisposedException(nameof(NativeBuffer<T>));

    public Span<T> Span => new(Pointer, checked((int)Length));

    public Span<T> Slice(long start, int length)
    {
        if (start < 0 || start + length > Length) throw new ArgumentOutOfRangeException(nameof(start));
        return new Span<T>(Pointer + start, length);
    }

    /// <summary>A tensor of <paramref name="shape"/> over the start of this buffer.</summary>
    public OrtValue Tensor(long[] shape)
    {
        var type = typeof(T) == typeof(float) ? TensorElementType.Float
            : typeof(T) == typeof(long) ? TensorElementType.Int64
            : throw new NotSupportedException($"No ONNX element type for {typeof(T)}.");
        return Tensor(shape, type);
    }

    /// <summary>A tensor of <paramref name="shape"/> and element <paramref name="type"/> over the start of this buffer's bytes.</summary>
    public OrtValue Tensor(long[] shape, TensorElementType type)
    {
        long count = 1;
        foreach (var d in shape) count *= d;
        long bytes = count * ElementSize(type);
        if (bytes > Length * sizeof(T)) throw new ArgumentException($"Shape needs {bytes} bytes; the buffer holds {Length * sizeof(T)}.", nameof(shape));
        return OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, type, shape, (IntPtr)Pointer, bytes);
    }

    /// <summary>Bytes per element of the ONNX types the runner binds.</summary>
    public static int ElementSize(TensorElementType type) => type switch
    {
        TensorElementType.Float or TensorElementType.Int32 => 4,
        TensorElementType.Int64 => 8,
        TensorElementType.Float16 or TensorElementType.BFloat16 => 2,
        TensorElementType.Bool or TensorElementType.Int8 or TensorElementType.UInt8 => 1,
        _ => throw new NotSupportedException($"No binding for ONNX element type {type}."),
    };

    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    private void Free()
    {
        if (_pointer == null) return;
        NativeMemory.AlignedFree(_pointer);
        _pointer = null;
        GC.RemoveMemoryPressure(Length * sizeof(T));
    }
}
