/*
 * Test firmware for Renode's STM32F4 Discovery (platforms/boards/stm32f4_discovery-kit.repl).
 * Cortex-M4, console on USART2. Behaviour: see ../README.md and ../common/console.h.
 *
 * USART3 is "the bus" to other boards (in Renode: a UART hub joining several machines'
 * usart3): every console line is also sent there, and lines received there are printed
 * on the console as "bus: <line>".
 *
 * All work happens in the USART2, USART3, SysTick and EXTI0 handlers (and CAN1 RX0 in the
 * CAN ECU build), all at the same priority, so they never preempt each other; the main loop
 * only sleeps in WFI, because a firmware that polls a peripheral register while idle runs
 * many times slower than real time in Renode.
 *
 * The green user LED (PD12, "sysbus.gpioPortD.UserLED" in Renode) is lit exactly while the
 * user button (PA0, "sysbus.gpioPortA.UserButton") is held: EXTI0 fires on both edges.
 *
 * Built with -DCAN_ECU it is also a small CAN ECU on CAN1 (can_ecu.h): SysTick then runs
 * at 1 ms for good and the 100 ms ticks are counted down from it.
 */
#include <stdint.h>

#define BOARD "stm32f4"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define RCC_AHB1ENR  REG(0x40023830)
#define RCC_APB1ENR  REG(0x40023840)
#define AHB1ENR_GPIOAEN  (1u << 0)
#define AHB1ENR_GPIODEN  (1u << 3)
#define APB1ENR_USART2EN (1u << 17)
#define APB1ENR_USART3EN (1u << 18)

/* GPIO ports: MODER +0x00 (2 bits a pin: 00 input, 01 output), OTYPER +0x04 (0 push-pull),
 * PUPDR +0x0C, IDR +0x10, BSRR +0x18 (low half sets, high half resets). */
#define GPIOA_MODER REG(0x40020000)
#define GPIOA_PUPDR REG(0x4002000C)
#define GPIOA_IDR   REG(0x40020010)
#define GPIOD_MODER  REG(0x40020C00)
#define GPIOD_OTYPER REG(0x40020C04)
#define GPIOD_BSRR   REG(0x40020C18)
#define BUTTON_PIN 0  /* PA0: user button, high while pressed (external pull-down on the board) */
#define LED_PIN    12 /* PD12: green user LED, lit while high */

/* EXTI line 0. SYSCFG_EXTICR1 (0x40013808) selects port A for line 0 after reset, so it is
 * left alone (Renode 1.16.1's stm32f4.repl has no SYSCFG model: every port's pin 0 drives
 * line 0, and only PA0 ever changes here). */
#define EXTI_IMR  REG(0x40013C00)
#define EXTI_RTSR REG(0x40013C08)
#define EXTI_FTSR REG(0x40013C0C)
#define EXTI_PR   REG(0x40013C14)
#define EXTI0_IRQ 6

#define USART2 0x40004400u /* the console */
#define USART3 0x40004800u /* the bus */
#define USART_SR(base)  REG((base) + 0x00)
#define USART_DR(base)  REG((base) + 0x04)
#define USART_BRR(base) REG((base) + 0x08)
#define USART_CR1(base) REG((base) + 0x0C)
#define SR_RXNE (1u << 5)
#define SR_TXE  (1u << 7)
#define CR1_RE     (1u << 2)
#define CR1_TE     (1u << 3)
#define CR1_RXNEIE (1u << 5)
#define CR1_UE     (1u << 13)
#define USART2_IRQ 38
#define USART3_IRQ 39

#define NVIC_ISER(n) REG(0xE000E100 + 4 * (n))
#define SCB_ICSR     REG(0xE000ED04)
#define ICSR_PENDSTCLR (1u << 25)

#define SCB_AIRCR    REG(0xE000ED0C)
#define AIRCR_SYSRESETREQ (0x05FAu << 16 | 1u << 2) /* VECTKEY, then request a system reset */

#define SYST_CSR REG(0xE000E010)
#define SYST_RVR REG(0xE000E014)
#define SYST_CVR REG(0xE000E018)
#define CSR_ENABLE    (1u << 0)
#define CSR_TICKINT   (1u << 1)
#define CSR_CLKSOURCE (1u << 2) /* core clock */

/* SysTick rate: "systickFrequency: 72000000" of the nvic in Renode's stm32f4.repl. */
#define SYSTICK_HZ 72000000u
/* Renode's SysTick fires every RVR counts (real silicon: RVR + 1), so this is exactly
 * 100 ms of emulated time; 7.2 M fits the 24-bit reload register. */
#define TICK_RELOAD (SYSTICK_HZ / 10)
/* The CAN ECU build: SysTick every 1 ms (same convention), 100 of them make a tick. */
#define MS_RELOAD   (SYSTICK_HZ / 1000)
#define TICK_MS     100

static void usart_putc(uint32_t base, char c)
{
    while (!(USART_SR(base) & SR_TXE)) /* short: Renode's TX register is always empty */
        ;
    USART_DR(base) = (uint8_t)c;
}

static void uart_putc(char c)
{
    usart_putc(USART2, c);
}

static void usart_init(uint32_t base)
{
    USART_BRR(base) = 0x45; /* 115200 baud from the 8 MHz clock of Renode's model */
    USART_CR1(base) = CR1_UE | CR1_TE | CR1_RE | CR1_RXNEIE;
}

static void bus_send(const char *s, uint32_t n);
#ifdef BOOT_COUNTER
static void reboot_on(const char *s, uint32_t n);
/* The counter build also resets itself on the line "reboot" (after its echo). */
#define CONSOLE_LINE_HOOK(s, n) (bus_send(s, n), reboot_on(s, n))
#elif defined(CAN_ECU)
static void can_send_on(const char *s, uint32_t n);
/* The CAN ECU build also runs "can send <ID>#<DATA>" (after its echo and the bus). */
#define CONSOLE_LINE_HOOK(s, n) (bus_send(s, n), can_send_on(s, n))
#else
/* Every console line goes to the bus after its echo and command handling (console.h). */
#define CONSOLE_LINE_HOOK(s, n) bus_send(s, n)
#endif

#ifdef CAN_ECU
/* SysTick never stops in this build (the CAN timing needs it): ticks are a countdown of
 * 1 ms SysTicks, so the first one comes 100 SysTicks after "ticks on", i.e. 99 to 100 ms
 * later (not a full period to the cycle as in the other builds), then every 100 ms. */
static uint32_t tick_ms_left; /* 0: ticks off */

static void ticker_start(void)
{
    tick_ms_left = TICK_MS;
}

static void ticker_stop(void)
{
    tick_ms_left = 0;
}

static void systick_start_ms(void)
{
    SYST_CSR = 0;
    SYST_RVR = MS_RELOAD;
    SYST_CVR = 0;
    SCB_ICSR = ICSR_PENDSTCLR;
    SYST_CSR = CSR_ENABLE | CSR_TICKINT | CSR_CLKSOURCE;
}
#else
static void ticker_start(void)
{
    SYST_CSR = 0;
    SYST_RVR = TICK_RELOAD;
    SYST_CVR = 0;                /* any write reloads: first tick a full period from now */
    SCB_ICSR = ICSR_PENDSTCLR;   /* drop a tick of the previous run still pending */
    SYST_CSR = CSR_ENABLE | CSR_TICKINT | CSR_CLKSOURCE;
}

static void ticker_stop(void)
{
    SYST_CSR = 0;
    SCB_ICSR = ICSR_PENDSTCLR;
}
#endif

#include "../common/console.h"

#ifdef BOOT_COUNTER
#include "boot_counter.h"
#endif
#ifdef CAN_ECU
#include "can_ecu.h"
#endif

static uint32_t button_down; /* last state reported on the console */

static uint32_t button_read(void)
{
    return (GPIOA_IDR >> BUTTON_PIN) & 1u;
}

static void led_set(uint32_t on)
{
    GPIOD_BSRR = on ? 1u << LED_PIN : 1u << (LED_PIN + 16);
}

/* Both edges of PA0. PR is cleared before the pin is read: an edge after the read pends
 * the interrupt again, so the LED never stays out of step with the button. */
static void exti0_handler(void)
{
    EXTI_PR = 1u << BUTTON_PIN; /* write 1 to clear */
    uint32_t down = button_read();
    led_set(down);
    if (down != button_down) {
        button_down = down;
        put_str(down ? "button pressed\r\n" : "button released\r\n");
    }
}

static void button_led_init(void)
{
    RCC_AHB1ENR |= AHB1ENR_GPIOAEN | AHB1ENR_GPIODEN;
    (void)RCC_AHB1ENR; /* real silicon: let the clock enable settle before touching the ports */

    GPIOA_MODER &= ~(3u << (2 * BUTTON_PIN)); /* input */
    GPIOA_PUPDR &= ~(3u << (2 * BUTTON_PIN)); /* no pull: the board has its own pull-down */
    GPIOD_OTYPER &= ~(1u << LED_PIN);          /* push-pull */
    GPIOD_MODER = (GPIOD_MODER & ~(3u << (2 * LED_PIN))) | (1u << (2 * LED_PIN)); /* output */

    EXTI_RTSR |= 1u << BUTTON_PIN;
    EXTI_FTSR |= 1u << BUTTON_PIN;
    EXTI_PR = 1u << BUTTON_PIN;
    EXTI_IMR |= 1u << BUTTON_PIN;

    /* The LED follows the button from boot on; the state at boot is not printed. */
    button_down = button_read();
    led_set(button_down);
}

static void usart2_handler(void)
{
    while (USART_SR(USART2) & SR_RXNE) /* reading DR clears RXNE */
        console_rx((char)USART_DR(USART2));
}

static char bus_line[LINE_MAX];
static uint32_t bus_len;

static void bus_send(const char *s, uint32_t n)
{
    while (n--)
        usart_putc(USART3, *s++);
    usart_putc(USART3, '\r');
    usart_putc(USART3, '\n');
}

/* Lines from the bus are only printed: not sent back (two boards would bounce a line
 * between them forever) and not run as commands. */
static void usart3_handler(void)
{
    while (USART_SR(USART3) & SR_RXNE) {
        if (!line_collect(bus_line, &bus_len, (char)USART_DR(USART3)))
            continue;
        put_str("bus: ");
        put_buf(bus_line, bus_len);
        put_str("\r\n");
        bus_len = 0;
    }
}

static void systick_handler(void)
{
#ifdef CAN_ECU
    can_ecu_ms();
    if (tick_ms_left && --tick_ms_left == 0) {
        tick_ms_left = TICK_MS;
        console_tick();
    }
#else
    console_tick();
#endif
}

/* Linker script symbols. */
extern uint32_t __stack_top[];
extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];

void reset_handler(void); /* global: the ELF entry point */
void reset_handler(void)
{
    for (uint32_t *src = __data_load, *dst = __data_start; dst < __data_end;)
        *dst++ = *src++;
    for (uint32_t *dst = __bss_start; dst < __bss_end;)
        *dst++ = 0;

    /* Masked until the banner is out, so it is the first line and whole: a bus line another
     * board sends meanwhile waits in the USART3 receive queue (Renode's model drops bytes only
     * before usart_init), a button edge in EXTI_PR, both as pending interrupts. */
    __asm__ volatile("cpsid i" ::: "memory");

    RCC_APB1ENR |= APB1ENR_USART2EN | APB1ENR_USART3EN;
    usart_init(USART2);
    usart_init(USART3);

    button_led_init();

    console_banner();
#ifdef BOOT_COUNTER
    boot_counter_update();
#endif
#ifdef CAN_ECU
    can_ecu_init();     /* also enables its NVIC line, still masked here */
    systick_start_ms(); /* first periodic frame 10 ms from here */
#endif
    NVIC_ISER(USART2_IRQ / 32) = 1u << (USART2_IRQ % 32);
    NVIC_ISER(USART3_IRQ / 32) = 1u << (USART3_IRQ % 32);
    NVIC_ISER(EXTI0_IRQ / 32) = 1u << (EXTI0_IRQ % 32);
    /* What is pending is taken here, before the first WFI (the ISB makes the unmasking take
     * effect). Not just tidy: in Renode 1.16.1, enabling a UART interrupt whose line is already
     * raised and then executing WFI left the core asleep at the handler's first instruction for
     * good (seen with a bus line that arrived during the banner). */
    __asm__ volatile("cpsie i\n\tisb" ::: "memory");
    for (;;)
        __asm__ volatile("wfi");
}

static void unexpected_handler(void)
{
    for (;;)
        __asm__ volatile("wfi");
}

typedef void (*vector_t)(void);

#ifndef CAN_ECU
#define CAN1_RX0_IRQ 20
#define can1_rx0_handler unexpected_handler
#endif

/* Placed first in flash (0x08000000): Renode and the hardware read SP and PC from here. */
__attribute__((section(".vectors"), used))
static const vector_t vectors[16 + USART3_IRQ + 1] = {
    [0] = (vector_t)__stack_top,
    [1] = reset_handler,
    [2 ... 14] = unexpected_handler,
    [15] = systick_handler,
    [16 ... 16 + EXTI0_IRQ - 1] = unexpected_handler,
    [16 + EXTI0_IRQ] = exti0_handler,
    [16 + EXTI0_IRQ + 1 ... 16 + CAN1_RX0_IRQ - 1] = unexpected_handler,
    [16 + CAN1_RX0_IRQ] = can1_rx0_handler,
    [16 + CAN1_RX0_IRQ + 1 ... 16 + USART2_IRQ - 1] = unexpected_handler,
    [16 + USART2_IRQ] = usart2_handler,
    [16 + USART3_IRQ] = usart3_handler,
};
